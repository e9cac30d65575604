"""`sftlab serve`: the REST API, its micro-batching queue and the web page."""
