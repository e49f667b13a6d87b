"""The top-level Python API, used as in a notebook: `synthrec.Synthesizer` on a DataFrame."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import synthrec
from synthrec.config import GAN_EPOCHS, EncoderConfig, GanConfig, TrainGanConfig
from synthrec.errors import ConfigError, DataError

CFG = GanConfig(
    embedding_dim=8,
    generator_dims=[16],
    critic_dims=[16],
    batch_size=100,
    pac=10,
    encoder=EncoderConfig(mode_fit_rows=300, id_profile_rows=300),
    sample_batch_rows=200,
    id_calibration_rounds=0,  # seconds of sampling that this API test does not need
)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 600
    return pd.DataFrame(
        {
            "customer": [f"c{i}" for i in rng.integers(0, 40, n)],
            "sku": rng.integers(0, 80, n),
            "colour": pd.Categorical(rng.choice(["red", "blue", "green"], n)),
            "price": rng.lognormal(2, 1, n),
            "bought": rng.integers(0, 2, n),
        },
        index=rng.permutation(n),  # an index that must not become a column
    )


@pytest.fixture(scope="module")
def synth(frame):
    return synthrec.Synthesizer().fit(frame, cfg=CFG, epochs=1)


def test_python_api_import_is_light_and_synthesizer_is_lazy():
    code = (
        "import sys, synthrec; heavy = [m for m in ('torch', 'pandas', 'pyarrow', 'ray') "
        "if m in sys.modules]; assert not heavy, heavy; "
        "from synthrec.gan import Synthesizer; assert synthrec.Synthesizer is Synthesizer; "
        "assert 'Synthesizer' in dir(synthrec)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_python_api_fit_on_a_dataframe_samples_dataframes(frame, synth):
    out = synth.sample(250, seed=1)
    assert isinstance(out, pd.DataFrame) and len(out) == 250
    assert list(out.columns) == list(frame.columns)
    table = synth.sample(250, seed=1, return_type="arrow")
    assert isinstance(table, pa.Table) and table.to_pandas().equals(out)
    drama = synth.sample(50, conditions={"colour": "red"}, seed=2)
    assert set(drama["colour"]) == {"red"}


def test_python_api_sample_draws_a_fresh_seed_unless_given(synth):
    assert not synth.sample(200).equals(synth.sample(200))
    assert synth.sample(200, seed=5).equals(synth.sample(200, seed=5))


def test_python_api_fit_defaults_to_the_cli_epochs():
    assert GanConfig().epochs == GAN_EPOCHS
    assert TrainGanConfig(data_uri="d", out_uri="o").epochs == GAN_EPOCHS


def test_python_api_usage_errors(synth):
    with pytest.raises(DataError, match="pyarrow Table or a pandas DataFrame, got list"):
        synthrec.Synthesizer().fit([[1, 2]], cfg=CFG)
    with pytest.raises(ConfigError, match="return_type must be 'arrow' or 'pandas'"):
        synth.sample(5, return_type="polars")


def test_python_api_save_and_load_keep_samples_and_dataframes(synth, tmp_path):
    version = synth.save(str(tmp_path / "model"))
    loaded = synthrec.Synthesizer.load(str(tmp_path / "model"))
    assert version == loaded.metadata["version"] == synth.metadata["version"]
    out = loaded.sample(120, seed=3)
    assert isinstance(out, pd.DataFrame) and out.equals(synth.sample(120, seed=3))


def test_python_api_verbose_prints_a_line_per_epoch_and_quiet_prints_nothing(frame, capfd):
    seen = []
    synthrec.Synthesizer().fit(
        frame, cfg=CFG, epochs=2, verbose=True, progress=lambda **m: seen.append(m)
    )
    lines = capfd.readouterr().err.splitlines()
    assert [line.split("  ")[0] for line in lines] == [
        "Synthesizer: epoch 1",
        "Synthesizer: epoch 2",
    ]
    assert " s (total " in lines[0] and "critic_loss" in lines[0]
    assert len(seen) == 2  # the user's own callback still runs
    synthrec.Synthesizer().fit(frame, cfg=CFG, epochs=1)
    assert capfd.readouterr() == ("", "")


def test_python_api_sequence_synthesizer_save_and_load(tmp_path, capfd):
    from synthrec.config import SequenceConfig
    from tests.logshapes import taobao_log

    tiny = SequenceConfig(
        d_model=16, n_heads=2, n_layers=1, window=8, epochs=1, users_epochs=1, adversarial_steps=0
    )
    df = taobao_log(400, seed=4).to_pandas()
    seq = synthrec.SequenceSynthesizer().fit(df, cfg=tiny, verbose=True)
    err = capfd.readouterr().err
    assert "SequenceSynthesizer: users epoch 1 " in err
    assert "SequenceSynthesizer: likelihood epoch 1 " in err
    version = seq.save(str(tmp_path / "seq"))
    loaded = synthrec.SequenceSynthesizer.load(str(tmp_path / "seq"))
    assert version == loaded.metadata["version"]
    a, b = seq.sample_table(users=6, seed=2), loaded.sample_table(users=6, seed=2)
    assert isinstance(b, pd.DataFrame) and a.equals(b)
