"""Model selection pieces: frozen features of a stratified sample and the transferability estimators that
score them (LogME, H-score, a linear probe). The recipe that wires them is `sftlab.recipes.select`."""
