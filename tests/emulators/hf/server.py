"""A Hugging Face Hub stand-in on 127.0.0.1: the model-info API, resolve, and an LFS CDN.

Driven by the real huggingface_hub client through HF_ENDPOINT. Two origins, as on the real
Hub: the Hub itself (`url`) and a storage CDN on another port (`cdn_url`) that LFS files are
redirected to with a signed URL. The rules below are the Hub's, as huggingface_hub relies on
them (file_download.py, hf_api.py, utils/_http.py of huggingface_hub 2.4, and the Hub's API
docs, huggingface.co/docs/hub/api):

- `GET /api/models/{repo}` and `/api/models/{repo}/revision/{rev}`: `id`, `sha` (the commit),
  `siblings` with `rfilename`; with `?blobs=true` also `size`, `blobId` (git oid) and for LFS
  files `lfs: {size, sha256, pointerSize}` (hf_api.py ModelInfo/RepoSibling). A gated repo's
  listing is public (only its files are gated).
- `HEAD|GET /{repo}/resolve/{rev}/{path}`: every answer carries `X-Repo-Commit` (without it
  huggingface_hub refuses: "does not seem to be served by a Hugging Face Hub endpoint").
  An LFS file answers 302 to the CDN with `X-Linked-Etag` (its sha256, quoted) and
  `X-Linked-Size`; a small git file answers 200 with its git oid as `ETag`.
- Errors set `X-Error-Code` (utils/_http.py hf_raise_for_status reads it, HEAD has no body):
  a missing repo is 401 `RepoNotFound` without a token and 404 with one (the Hub does not tell
  anonymous callers whether a private repo exists; huggingface_hub's comment and
  https://gist.github.com/Wauplin/46c27ad266b15998ce56a6603796f0b9); a gated repo's file is 401
  `GatedRepo` without a token and 403 `GatedRepo` with one that was not granted; a missing file
  is 404 `EntryNotFound` (with X-Repo-Commit); a missing revision 404 `RevisionNotFound`; an
  unknown token 401 with `X-Error-Message: Invalid credentials in Authorization header`.
- The CDN (S3/CloudFront behind the Hub): the signature in the query must match, and an
  `Authorization` header is refused (S3: "Only one auth mechanism allowed"), so the client must
  drop the token when it leaves the Hub, as huggingface_hub does. `Range: bytes=N-` is answered
  206 with `Content-Range` (how huggingface_hub resumes a cut download).

Test hooks: `cut_next(path, after)` closes the next CDN download of that file after `after`
bytes (the headers promised the whole file); `hold_next(path, after)` sends `after` bytes of it
and then nothing until `release()` (a download in progress, for as long as a test needs);
`corrupt` (a set of paths) serves those files with one byte changed and the right length;
`records` lists every request; `grant(token, repo)` gives a token access to a gated repo;
`publish(repo, file)` makes a new commit that adds or replaces one file.

Faults of the Hub itself: `outage = 503` answers every Hub request with that status and an HTML
page, as the Hub's load balancer does in an outage (no X-Error-Code: huggingface_hub raises a
plain HfHubHTTPError, utils/_http.py hf_raise_for_status); `files_need_login` stands for a
mirror (HF_ENDPOINT) that lists repositories to anyone but serves files only to an account: an
anonymous resolve gets 401 with no X-Error-Code and a `WWW-Authenticate` challenge (RFC 9110
§11.6.1), which huggingface_hub raises as HfHubHTTPError 401 (not RepositoryNotFoundError: that
mapping is for /api/ URLs only, utils/_http.py REPO_API_REGEX).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from dataclasses import dataclass, field

from aiohttp import web

from botkit.backends.model_files import bundled_model_path
from tests.emulators.hf.gguf_files import gguf_bytes, smollm_metadata, split_gguf

SMOL_REPO = "botkit-test/SmolLM2-135M-Instruct-GGUF"
SPLIT_REPO = "botkit-test/Split-GGUF"
GATED_REPO = "botkit-test/Gated-GGUF"
_SECRET = b"emulator-cdn-signing-key"
_LFS_POINTER_SIZE = 134  # a git-lfs pointer file's size, as the Hub lists it


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class HubFile:
    """A file in a repo: its bytes, whether git LFS stores it, and its digests."""

    path: str
    data: bytes = field(repr=False)  # (a repr of 98 MB costs pytest seconds)
    lfs: bool = True
    sha256: str = field(init=False)  # the LFS oid, which the Hub sends as X-Linked-Etag

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256(self.data).hexdigest()


@dataclass
class HubRepo:
    """A model repository at one commit."""

    repo_id: str
    files: list[HubFile]
    gated: bool = False
    commit: str = ""

    def __post_init__(self) -> None:
        if not self.commit:
            self.commit = hashlib.sha1(self.repo_id.encode()).hexdigest()

    def file(self, path: str) -> HubFile | None:
        """The file at path, if the repo has it."""
        return next((f for f in self.files if f.path == path), None)


@dataclass(frozen=True)
class HubRecord:
    """One request as the emulator saw it."""

    origin: str  # "hub" or "cdn"
    method: str
    path: str
    range: str | None
    authorized: bool


def default_repos() -> list[HubRepo]:
    """The bundled model under a fake repo (with two smaller header-only quantizations, a
    README and a vision projector), the bundled model split in two (gguf-split's layout, which
    llama.cpp loads), and a gated repo."""
    bundled = bundled_model_path().read_bytes()
    stem = "SmolLM2-135M-Instruct"
    return [
        HubRepo(
            SMOL_REPO,
            [
                HubFile("README.md", b"# SmolLM2-135M-Instruct GGUF\n", lfs=False),
                HubFile(f"{stem}-Q4_1.gguf", bundled),
                HubFile(f"{stem}-Q3_K_M.gguf", gguf_bytes(smollm_metadata(12), 60_000_000)),
                HubFile(f"{stem}-Q2_K.gguf", gguf_bytes(smollm_metadata(10), 40_000_000)),
                HubFile("mmproj-SmolLM2-f16.gguf", gguf_bytes(smollm_metadata(1), 4096)),
            ],
        ),
        HubRepo(
            SPLIT_REPO,
            [
                HubFile(f"Q4_1/{stem}-Q4_1-{n:05d}-of-00002.gguf", shard)
                for n, shard in enumerate(split_gguf(bundled_model_path(), 2), 1)
            ],
        ),
        HubRepo(GATED_REPO, [HubFile(f"{stem}-Q4_1.gguf", bundled)], gated=True),
    ]


@dataclass
class HubEmulator:
    """Start with `await hub.start()`; point HF_ENDPOINT at `hub.url`."""

    repos: list[HubRepo] = field(default_factory=default_repos, repr=False)
    tokens: set[str] = field(default_factory=set)
    corrupt: set[str] = field(default_factory=set)
    outage: int | None = None
    files_need_login: bool = False
    records: list[HubRecord] = field(default_factory=list, repr=False)
    url: str = ""
    cdn_url: str = ""
    _grants: set[tuple[str, str]] = field(default_factory=set)
    _cuts: dict[str, int] = field(default_factory=dict)
    _holds: dict[str, int] = field(default_factory=dict)
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _runners: list[web.AppRunner] = field(default_factory=list)

    # --- test hooks ---------------------------------------------------------------------

    def grant(self, token: str, repo_id: str) -> None:
        """The token's account accepted the gated repo's terms."""
        self.tokens.add(token)
        self._grants.add((token, repo_id))

    def cut_next(self, path: str, after: int) -> None:
        """Drop the connection of the next CDN download of path after `after` bytes."""
        self._cuts[path] = after

    def hold_next(self, path: str, after: int) -> None:
        """Send `after` bytes of the next CDN download of path, then wait for release()."""
        self._holds[path] = after
        self._released = asyncio.Event()

    def release(self) -> None:
        """Let held downloads go on (to the end, or to the error of a closed connection)."""
        self._released.set()

    def publish(self, repo_id: str, file: HubFile) -> None:
        """A new commit of the repo that adds file, or replaces the file at its path."""
        repo = self.repo(repo_id)
        repo.files = [f for f in repo.files if f.path != file.path] + [file]
        repo.commit = hashlib.sha1(repo.commit.encode() + file.sha256.encode()).hexdigest()

    def repo(self, repo_id: str) -> HubRepo:
        """The repo with that id."""
        return next(r for r in self.repos if r.repo_id == repo_id)

    # --- lifecycle ----------------------------------------------------------------------

    async def _serve(self, app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        self._runners.append(runner)
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def start(self) -> None:
        """Serve the Hub and its CDN on two free ports of 127.0.0.1."""
        hub = web.Application()
        hub.router.add_get("/api/models/{owner}/{name}", self._model_info)
        hub.router.add_get("/api/models/{owner}/{name}/revision/{rev}", self._model_info)
        hub.router.add_route("*", "/{owner}/{name}/resolve/{rev}/{path:.+}", self._resolve)
        cdn = web.Application()
        cdn.router.add_route("*", "/lfs/{sha256}", self._cdn)
        self.url = await self._serve(hub)
        self.cdn_url = await self._serve(cdn)

    async def stop(self) -> None:
        """Stop both servers (again: nothing)."""
        self.release()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    # --- the Hub ------------------------------------------------------------------------

    def _record(self, origin: str, request: web.Request) -> None:
        self.records.append(
            HubRecord(
                origin,
                request.method,
                request.path,
                request.headers.get("Range"),
                "Authorization" in request.headers,
            )
        )

    @staticmethod
    def _error(status: int, code: str | None, message: str, **headers: str) -> web.Response:
        if code:
            headers["X-Error-Code"] = code
        headers["X-Error-Message"] = message
        return web.Response(
            status=status,
            body=json.dumps({"error": message}).encode(),
            content_type="application/json",
            headers=headers,
        )

    def _token(self, request: web.Request) -> tuple[str | None, web.Response | None]:
        auth = request.headers.get("Authorization")
        if auth is None:
            return None, None
        token = auth.removeprefix("Bearer ")
        if token not in self.tokens:
            return token, self._error(401, None, "Invalid credentials in Authorization header")
        return token, None

    def _find_repo(
        self, request: web.Request
    ) -> tuple[HubRepo | None, str | None, web.Response | None]:
        token, refused = self._token(request)
        if refused is not None:
            return None, token, refused
        repo_id = f"{request.match_info['owner']}/{request.match_info['name']}"
        repo = next((r for r in self.repos if r.repo_id == repo_id), None)
        if repo is None:
            return (
                None,
                token,
                self._error(401 if token is None else 404, "RepoNotFound", "Repository not found"),
            )
        rev = request.match_info.get("rev")
        if rev is not None and rev not in ("main", repo.commit):
            return (
                None,
                token,
                self._error(
                    404, "RevisionNotFound", f"Invalid rev id: {rev}", **{"X-Repo-Commit": ""}
                ),
            )
        return repo, token, None

    def _down(self) -> web.Response | None:
        if self.outage is None:
            return None
        return web.Response(
            status=self.outage,
            text=f"<html><body><h1>{self.outage} Service Unavailable</h1></body></html>",
            content_type="text/html",
        )

    async def _model_info(self, request: web.Request) -> web.Response:
        self._record("hub", request)
        if (down := self._down()) is not None:
            return down
        repo, _token, error = self._find_repo(request)
        if error is not None:
            return error
        assert repo is not None
        blobs = request.query.get("blobs") in ("true", "True", "1")
        siblings = []
        for f in repo.files:
            sibling: dict[str, object] = {"rfilename": f.path}
            if blobs:
                sibling |= {"size": len(f.data), "blobId": _git_oid(f.data)}
                if f.lfs:
                    sibling["lfs"] = {
                        "size": len(f.data),
                        "sha256": f.sha256,
                        "pointerSize": _LFS_POINTER_SIZE,
                    }
            siblings.append(sibling)
        body = {
            "_id": repo.commit[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": repo.commit,
            "lastModified": "2026-11-01T12:00:00.000Z",
            "private": False,
            "gated": "auto" if repo.gated else False,
            "disabled": False,
            "tags": ["gguf"],
            "library_name": "gguf",
            "siblings": siblings,
        }
        return web.Response(body=json.dumps(body).encode(), content_type="application/json")

    def _sign(self, sha256: str) -> str:
        return hmac.new(_SECRET, sha256.encode(), "sha256").hexdigest()

    async def _resolve(self, request: web.Request) -> web.StreamResponse:
        self._record("hub", request)
        if (down := self._down()) is not None:
            return down
        if request.method not in ("HEAD", "GET"):
            return self._error(405, None, "Method not allowed")
        repo, token, error = self._find_repo(request)
        if error is not None:
            return error
        assert repo is not None
        commit = {"X-Repo-Commit": repo.commit}
        if self.files_need_login and token is None:
            return web.Response(
                status=401,
                text="Unauthorized",
                headers={"WWW-Authenticate": 'Bearer realm="mirror"'},
            )
        if repo.gated and (token, repo.repo_id) not in self._grants:
            message = (
                f"Access to model {repo.repo_id} is restricted. You must have access to it and "
                "be authenticated to access it. Please log in."
            )
            return self._error(401 if token is None else 403, "GatedRepo", message, **commit)
        file = repo.file(request.match_info["path"])
        if file is None:
            return self._error(404, "EntryNotFound", "Entry not found", **commit)
        if file.lfs:
            location = f"{self.cdn_url}/lfs/{file.sha256}?X-Amz-Signature={self._sign(file.sha256)}"
            return web.Response(
                status=302,
                headers={
                    **commit,
                    "Location": location,
                    "ETag": f'"{_git_oid(file.data)}"',
                    "X-Linked-Etag": f'"{file.sha256}"',
                    "X-Linked-Size": str(len(file.data)),
                },
            )
        headers = {**commit, "ETag": f'"{_git_oid(file.data)}"'}
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(file.data))
            return web.Response(headers=headers)
        return web.Response(body=file.data, headers=headers)

    # --- the CDN ------------------------------------------------------------------------

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        self._record("cdn", request)
        if "Authorization" in request.headers:
            return web.Response(
                status=400,
                text="<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism "
                "allowed</Message></Error>",
                content_type="application/xml",
            )
        sha256 = request.match_info["sha256"]
        if not hmac.compare_digest(request.query.get("X-Amz-Signature", ""), self._sign(sha256)):
            return web.Response(
                status=403, text="<Error><Code>SignatureDoesNotMatch</Code></Error>"
            )
        file = next((f for r in self.repos for f in r.files if f.sha256 == sha256), None)
        if file is None:
            return web.Response(status=404, text="<Error><Code>NoSuchKey</Code></Error>")
        data = file.data
        if file.path in self.corrupt:
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
        start = 0
        status = 200
        headers = {"Accept-Ranges": "bytes", "ETag": f'"{hashlib.md5(data).hexdigest()}"'}
        spec = request.headers.get("Range")
        if spec is not None:
            first, _, last = spec.removeprefix("bytes=").partition("-")
            if last or not first.isdigit() or int(first) >= len(data):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
            start, status = int(first), 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        headers["Content-Length"] = str(len(data) - start)
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        cut = self._cuts.pop(file.path, None)
        end = len(data) if cut is None else min(len(data), start + cut)
        hold = self._holds.pop(file.path, None)
        step = 1 << 20
        for offset in range(start, end, step):
            if hold is not None and offset >= start + hold:
                hold = None
                await self._released.wait()
            try:
                await response.write(data[offset : min(end, offset + step)])
            except ConnectionError:  # the client went away (a test killed it)
                return response
        if cut is not None:
            assert request.transport is not None
            request.transport.close()  # the connection dies mid-file
            return response
        await response.write_eof()
        return response
