"""A stand-in for the Hugging Face Hub, on 127.0.0.1, for huggingface_hub's real client (the download Job's
``HfApi.repo_info`` and ``snapshot_download``, cli/download.py) through ``HF_ENDPOINT``. It is a stand-in because
no machine here reaches the Hub; it answers just what that client asks, as read in its sources and seen in
:attr:`StandInHub.requests`:

* ``GET /api/agent-harnesses``: the CLI's agent registry at start-up (``utils/_detect_agent.py``); empty.
* ``GET /api/models/REPO/revision/REV``: ``repo_info`` (the Job's first call, and ``snapshot_download``'s,
  ``_snapshot_download.py``): the commit ``sha`` and the ``siblings``.
* ``GET /api/models/REPO/tree/COMMIT?recursive=...``: its ``list_repo_tree`` (``hf_api.py``): one page of
  ``{"type": "file", "path", "size", "oid", "lfs": {"oid", "size", "pointerSize"}}``.
* ``HEAD``/``GET /REPO/resolve/REV/FILE``: as the Hub answers for an LFS file, a 302 to the file's storage
  on another origin with ``X-Repo-Commit``, ``X-Linked-Etag`` (the sha256) and ``X-Linked-Size``
  (``file_download.py`` ``get_hf_file_metadata`` reads these from the redirect itself; without
  ``X-Repo-Commit`` it refuses the endpoint). The client follows a redirect to the same origin
  (``utils/_http.py`` ``_httpx2_follow_hub_redirects_with_backoff``), so the storage is a second server.
* ``GET /lfs/SHA256`` on the storage server: the bytes, with ``Content-Length`` and ``Range`` for a resumed
  download.

Errors come as the Hub sends them, with ``X-Error-Code`` and ``X-Error-Message`` (``utils/_http.py``
``hf_raise_for_status`` turns these into GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError):
401 ``GatedRepo`` for a gated repository without a granted token, 401 ``RepoNotFound`` for a private one
without its token (the Hub's answer to an anonymous request for a private or a missing repository, see the
comment in ``hf_raise_for_status``), 404 ``RepoNotFound`` for an unknown repository, 404 ``RevisionNotFound``
for an unknown revision.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

COMMIT = "5f0c0ffee5f0c0ffee5f0c0ffee5f0c0ffee5f0c"  # 40 hex: what huggingface_hub takes for a commit hash
LFS_POINTER_SIZE = 134  # the size of a git-lfs pointer file, as the Hub reports it
API_REPO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<kind>revision|tree)/(?P<rev>[^/?]+)")
RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
LFS = re.compile(r"^/lfs/(?P<sha>[0-9a-f]{64})$")
RANGE = re.compile(r"^bytes=(?P<start>\d+)-$")

Answer = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class StoredFile:
    data: bytes
    sha256: str
    git_oid: str

    @classmethod
    def read(cls, path: Path) -> StoredFile:
        data = path.read_bytes()
        return cls(data, hashlib.sha256(data).hexdigest(),
                   hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())  # git's blob id


def _error(status: int, code: str, message: str) -> Answer:
    body = json.dumps({"error": message}).encode()
    return status, {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}, body


def _json(value: Any) -> Answer:
    return 200, {"Content-Type": "application/json"}, json.dumps(value).encode()


@dataclass
class StandInHub:
    """Serves ``repos`` (repo id -> file name -> local file); ``gated`` and ``private`` map a repo id to
    the one token that has access. Use as a context manager; :attr:`url` is the ``HF_ENDPOINT``."""

    repos: Mapping[str, Mapping[str, Path]]
    gated: Mapping[str, str] = field(default_factory=dict)
    private: Mapping[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._files = {repo: {name: StoredFile.read(path) for name, path in files.items()}
                       for repo, files in self.repos.items()}
        self._blobs = {f.sha256: f for files in self._files.values() for f in files.values()}
        self._servers: list[ThreadingHTTPServer] = []

    @property
    def url(self) -> str:
        """The Hub's origin (HF_ENDPOINT)."""
        return self._origin(0)

    @property
    def storage_url(self) -> str:
        """The origin the Hub redirects file downloads to (its CDN)."""
        return self._origin(1)

    def _origin(self, index: int) -> str:
        assert self._servers, "not started"
        host, port = self._servers[index].server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(self, target: str, headers: Mapping[str, str]) -> Answer:
        """The status, headers and body for a request (``headers`` with lower-case names)."""
        path = unquote(urlsplit(target).path)
        if path == "/api/agent-harnesses":
            return _json({"standardEnvVars": [], "harnesses": {}})
        if found := LFS.match(path):
            return self._blob(found["sha"], headers.get("range"))
        found = API_REPO.match(path) or RESOLVE.match(path)
        if found is None:
            return 404, {}, b"Not Found"
        repo, revision = found["repo"], found["rev"]
        refused = self._refusal(repo, revision, headers.get("authorization"))
        if refused is not None:
            return refused
        files = self._files[repo]
        if "file" in found.groupdict():
            return self._resolve(repo, files, found["file"])
        if found["kind"] == "revision":
            return _json({"id": repo, "modelId": repo, "sha": COMMIT, "private": False,
                          "gated": "manual" if repo in self.gated else False,
                          "siblings": [{"rfilename": name} for name in files]})
        return _json([{"type": "file", "path": name, "size": len(f.data), "oid": f.git_oid,
                       "lfs": {"oid": f.sha256, "size": len(f.data), "pointerSize": LFS_POINTER_SIZE}}
                      for name, f in files.items()])

    def _refusal(self, repo: str, revision: str, authorization: str | None) -> Answer | None:
        if repo not in self._files:
            return _error(404, "RepoNotFound", "Repository not found")
        if repo in self.gated and authorization != f"Bearer {self.gated[repo]}":
            return _error(401, "GatedRepo", f"Access to model {repo} is restricted. You must have access to it "
                                            "and be authenticated to access it. Please log in.")
        if repo in self.private and authorization != f"Bearer {self.private[repo]}":
            return _error(401, "RepoNotFound", "Repository not found")
        if revision not in ("main", COMMIT):
            return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return None

    def _resolve(self, repo: str, files: Mapping[str, StoredFile], name: str) -> Answer:
        stored = files.get(name)
        if stored is None:
            return _error(404, "EntryNotFound", f"{name} does not exist in {repo}")
        return 302, {"Location": f"{self.storage_url}/lfs/{stored.sha256}", "X-Repo-Commit": COMMIT,
                     "X-Linked-Etag": f'"{stored.sha256}"', "X-Linked-Size": str(len(stored.data)),
                     "ETag": f'W/"{stored.git_oid}"', "Content-Length": "0"}, b""

    def _blob(self, sha: str, byte_range: str | None) -> Answer:
        stored = self._blobs.get(sha)
        if stored is None:
            return 404, {}, b"Not Found"
        start = int(m["start"]) if byte_range and (m := RANGE.match(byte_range)) else 0
        headers = {"Content-Type": "application/octet-stream", "ETag": f'"{sha}"', "Accept-Ranges": "bytes"}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(stored.data) - 1}/{len(stored.data)}"
        return (206 if start else 200), headers, stored.data[start:]

    def __enter__(self) -> Self:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                status, headers, body = hub.answer(self.path,
                                                   {k.lower(): v for k, v in self.headers.items()})
                hub.requests.append((self.command, self.path, status))
                self.send_response(status)
                for key, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self) -> None:  # http.server's name
                self._serve()

            def do_HEAD(self) -> None:  # http.server's name
                self._serve()

            def log_message(self, format: str, *args: Any) -> None:
                del format, args  # requests are kept in hub.requests instead

        self._servers = [ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in ("hub", "storage")]
        for server in self._servers:
            threading.Thread(target=server.serve_forever, name="stand-in-hub", daemon=True).start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
