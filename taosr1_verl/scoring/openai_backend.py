"""OpenAI-compatible endpoint backend (``vllm serve``): ``/v1/completions`` with 1 token and label log-probs.

Prompts are rendered and tokenised locally with the model's tokenizer and sent as token ids, so the
endpoint sees exactly the tokens the offline backends see. vLLM's ``logprob_token_ids`` request field
returns the log-prob of each label token; ``return_tokens_as_token_ids`` keys them as ``token_id:<id>``.

:class:`VLLMServer` starts a real ``vllm serve`` process on loopback (used by the tests and for local
serving); :class:`OpenAIScorer` talks to any such endpoint with the standard library's HTTP client.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from taosr1_verl.schema import LabelSchema
from taosr1_verl.scoring.base import FirstTokenScorer

logger = logging.getLogger(__name__)


PROBE_TIMEOUT_S = 10.0
"""Seconds the first request (``/models``) may take: a dead or wrong ``--base-url`` fails this fast."""


class EndpointError(ConnectionError):
    """The endpoint cannot be reached or does not answer as an OpenAI-compatible server (the message names
    the URL); an ``OSError``, so the CLI reports it in one line."""


def _request(req: urllib.request.Request, timeout: float) -> Any:
    url = req.full_url
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as e:
        raise EndpointError(f"{url}: HTTP {e.code}: {e.read().decode(errors='replace')[:500]}") from None
    except (urllib.error.URLError, OSError) as e:  # refused, unknown host, timed out, reset
        reason = getattr(e, "reason", None) or e
        raise EndpointError(f"{url}: cannot reach the endpoint ({reason}); is the server running there?") from None
    try:
        return json.loads(body)
    except ValueError:
        raise EndpointError(f"{url}: the answer is not JSON: {body[:200]!r}") from None


def _post(url: str, payload: dict[str, Any], timeout: float, api_key: str | None) -> dict[str, Any]:
    data = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return _request(urllib.request.Request(url, data=data, headers=headers, method="POST"), timeout)


class OpenAIScorer(FirstTokenScorer):
    """First-token scoring against an OpenAI-compatible vLLM endpoint.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1``.
        tokenizer: the served model's tokenizer, or a local directory holding it.
        model: the served model name (default: the first one ``/v1/models`` lists).
        batch_size: prompts per request.
        max_in_flight: requests open at once (1: one after the other).

    Example:
        >>> s = OpenAIScorer("http://127.0.0.1:8000/v1", "runs/tiny")          # doctest: +SKIP
        >>> s.score_items("oak table", [{"title": "Oak dining table"}])         # doctest: +SKIP
    """

    name = "openai"

    def __init__(self, base_url: str, tokenizer: Any, schema: LabelSchema | str | None = None, *,
                 model: str | None = None, batch_size: int = 64, max_in_flight: int = 4, timeout: float = 300.0,
                 api_key: str | None = None, max_prompt_tokens: int | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base URL {base_url!r} must start with http:// or https:// "
                             "(e.g. http://127.0.0.1:8000/v1)")
        if isinstance(tokenizer, str | os.PathLike):
            from taosr1_verl.models.load import load_tokenizer

            tokenizer = load_tokenizer(tokenizer)
        super().__init__(tokenizer, schema, max_prompt_tokens)
        self.base_url = base_url.rstrip("/")
        if batch_size < 1 or max_in_flight < 1:
            raise ValueError(f"batch_size and max_in_flight must be >= 1, got {batch_size}, {max_in_flight}")
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.last_requests = 0
        """HTTP requests sent by the last :meth:`completions` call."""
        self.timeout = timeout
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY")
        self.model = model or self._first_model()

    @classmethod
    def open(cls, model: str, schema: LabelSchema | str | None = None, *, base_url: str | None = None,
             batch_size: int = 32, block_size: int | None = None, **kwargs: Any) -> OpenAIScorer:
        """``model`` is the local tokenizer directory of the model served at ``base_url``."""
        if not base_url:
            raise ValueError("backend 'openai' needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        return cls(base_url, model, schema=schema, batch_size=batch_size, **kwargs)

    def _first_model(self) -> str:
        req = urllib.request.Request(f"{self.base_url}/models")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        body = _request(req, min(self.timeout, PROBE_TIMEOUT_S))
        models = body.get("data", []) if isinstance(body, dict) else []
        if not models:
            raise EndpointError(f"{self.base_url}/models lists no model (is --base-url an OpenAI-compatible "
                                "server, ending in /v1?)")
        return models[0]["id"]

    def completions(self, seqs: Sequence[list[int]], **params: Any) -> Iterator[dict[str, Any]]:
        """``/v1/completions`` choices for token-id prompts, in input order.

        ``batch_size`` prompts go in one request (vLLM accepts a list of token-id prompts) and up to
        ``max_in_flight`` requests are open at once, so the server's scheduler batches across requests and
        the client's JSON work overlaps the server's compute. ``params`` are request fields
        (``max_tokens``, ``temperature``, ...). Sets :attr:`last_requests`.
        """
        starts = range(0, len(seqs), self.batch_size)
        chunks = [list(seqs[i:i + self.batch_size]) for i in starts]
        self.last_requests = len(chunks)
        pool = ThreadPoolExecutor(max_workers=max(1, min(self.max_in_flight, len(chunks))))
        try:
            payloads = [{"model": self.model, "prompt": c, **params} for c in chunks]
            bodies = pool.map(lambda x: _post(f"{self.base_url}/completions", x, self.timeout, self.api_key), payloads)
            for chunk, body in zip(chunks, bodies, strict=True):
                choices = sorted(body.get("choices", []), key=lambda c: c["index"])
                if len(choices) != len(chunk):
                    raise RuntimeError(f"endpoint returned {len(choices)} choices for {len(chunk)} prompts")
                yield from choices
        finally:
            # An error (or an abandoned iterator) drops the requests not yet sent.
            pool.shutdown(wait=True, cancel_futures=True)

    def _score_groups(self, groups: list[list[list[int]]], prefix_lens: list[int]) -> Iterator[np.ndarray]:
        # The server's prefix cache finds shared prefixes by itself, so groups need not be separate requests:
        # all rows go out together, in group order (one query's items stay adjacent for the cache).
        keys = [f"token_id:{t}" for t in self.label_ids]
        choices = self.completions([s for g in groups for s in g], max_tokens=1, temperature=0.0, logprobs=1,
                                   logprob_token_ids=self.label_ids, return_tokens_as_token_ids=True)
        row = 0
        with contextlib.closing(choices):
            for g in groups:
                rows: list[list[float]] = []
                for c in itertools.islice(choices, len(g)):
                    top = ((c.get("logprobs") or {}).get("top_logprobs") or [None])[0]
                    if not top or any(k not in top for k in keys):
                        raise RuntimeError(f"row {row}: no label log-probs in the response "
                                           f"(server without logprob_token_ids support?): {top}")
                    rows.append([float(top[k]) for k in keys])
                    row += 1
                yield np.asarray(rows, dtype=np.float64)

    def _score_group(self, seqs: list[list[int]], prefix_len: int) -> np.ndarray:
        (logits,) = self._score_groups([seqs], [prefix_len])
        return logits


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when the thread that started it dies, even by SIGKILL,
    so a killed benchmark or test leaves no server behind (it is in its own session, out of reach otherwise).

    ``prctl`` is looked up here, in the parent: the hook runs between fork and exec, where importing or
    loading a library could deadlock on a lock another thread held at the fork (Linux only; else None).
    """
    if sys.platform != "linux":
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig, sigterm = 1, int(signal.SIGTERM)
    return lambda: prctl(pr_set_pdeathsig, sigterm)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VLLMServer:
    """A ``vllm serve`` process on loopback, started on enter and stopped (SIGINT, then SIGKILL) on exit.

    The server runs in its own process group (stopping it stops its engine core) and, on Linux, gets SIGTERM
    when the thread that started it dies, so start it from a thread that outlives it.

    Example:
        >>> with VLLMServer("runs/tiny") as srv:                                 # doctest: +SKIP
        ...     OpenAIScorer(srv.base_url, "runs/tiny").score_items("oak", [{"title": "oak table"}])
    """

    def __init__(self, model: str | os.PathLike[str], *, port: int | None = None, block_size: int = 32,
                 max_model_len: int = 1024, dtype: str = "float32", startup_timeout: float = 300.0,
                 log_path: str | os.PathLike[str] | None = None, extra_args: list[str] | None = None,
                 dev_endpoints: bool = False) -> None:
        self.model = str(model)
        # vLLM's development routes (e.g. /reset_prefix_cache, for benchmarks); never on by default.
        self.env = {"VLLM_SERVER_DEV_MODE": "1"} if dev_endpoints else {}
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path else None
        self.args = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
            "--host", "127.0.0.1", "--port", str(self.port), "--dtype", dtype,
            "--max-model-len", str(max_model_len), "--enable-prefix-caching", "--block-size", str(block_size),
            "--enforce-eager", "--served-model-name", "taosr1", *(extra_args or []),
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> VLLMServer:
        from taosr1_verl.integrations.vllm_engine import cpu_engine_env, on_cpu

        if on_cpu():
            cpu_engine_env()  # the server's engine reads it from the environment it inherits
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 (closed in stop)
        self._log = log
        # Own process group: stopping it stops the engine core and workers the server spawned.
        env = {**os.environ, **self.env} if self.env else None
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env=env, preexec_fn=_die_with_parent_hook())
        deadline = time.monotonic() + self.startup_timeout
        health = f"http://127.0.0.1:{self.port}/health"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"vllm serve exited with code {self.proc.returncode} during start-up "
                                   f"(log: {self.log_path or 'not kept'})")
            try:
                with urllib.request.urlopen(health, timeout=2) as r:
                    if r.status == 200:
                        logger.info("vllm serve ready at %s (pid %d)", self.base_url, self.proc.pid)
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1.0)
        self.stop()
        raise TimeoutError(f"vllm serve not healthy after {self.startup_timeout:.0f}s")

    def reset_prefix_cache(self) -> None:
        """Empty the server's prefix cache (needs ``dev_endpoints=True``)."""
        body = _post(f"http://127.0.0.1:{self.port}/reset_prefix_cache", {}, 60.0, None)
        if not body.get("success"):
            raise RuntimeError(f"vllm serve did not reset its prefix cache: {body}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGINT)
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            except ProcessLookupError:
                pass
        if proc is not None:
            self._reap_group(proc.pid)
        log = getattr(self, "_log", None)
        if log not in (None, subprocess.DEVNULL):
            log.close()
        self._log = None

    @staticmethod
    def _reap_group(pgid: int, timeout: float = 30.0) -> None:
        # The engine core and its workers exit a moment after the API server: wait, then force.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)

    def __exit__(self, *exc: object) -> None:
        self.stop()
