"""Replay a Lambda Dockerfile without Docker: the same COPY/ENV/RUN steps, into a folder and a venv.

No Docker engine runs here, so the packaging test follows functions/Dockerfile, once per function with that
function's build arguments, instruction by instruction (the self-hosting test replays the shim's image the same way):

- `FROM public.ecr.aws/lambda/python:3.12` becomes a fresh venv (the image's Python and its site-packages,
  /var/lang/lib/python3.12/site-packages) plus a folder standing for the image's file system;
- `FROM ${BASE_IMAGE}` replays layers/piper/Dockerfile first (once per session), then gives the function a venv of
  its own whose site-packages sees the base's through a .pth file: pip then treats what the base installed as
  installed, as it does in the layered image;
- `ARG` takes the build arguments given to `Builder.build` (`--build-arg`, SAM's `DockerBuildArgs`), scoped as in
  Docker; `ENV` and later instructions expand `${VAR}` as Docker does;
- `COPY` copies from the build context through its .dockerignore;
- `RUN` knows `pip install`, `python -c`, `rm` and the few steps the shim's image takes, joined by `&&`, and a
  leading test `[ x = y ] || ...`; anything else fails the replay, so a new build step cannot slip past the test
  unreplayed.

The handler then runs in that venv with `python -I` (no PYTHONPATH, no user site, not the repository), the task
root first on sys.path and as the working directory, as the Lambda runtime arranges.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

LAMBDA_BASE = "public.ecr.aws/lambda/python:3.12"
PYTHON_BASES = ("python:3.12-slim-bookworm",)
HOST_PYLIB = f"lib/python{sys.version_info.major}.{sys.version_info.minor}/"
IMAGE_SITE = "/var/lang/lib/python3.12/site-packages"
IMAGE_ENV = {"LAMBDA_TASK_ROOT": "/var/task", "LAMBDA_RUNTIME_DIR": "/var/runtime"}
PIP_TIMEOUT = 900


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{dockerfile}: dangling line continuation"
    result = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def expand(text: str, variables: dict[str, str]) -> str:
    """Docker's `$VAR` / `${VAR}` substitution, an unset one empty; `${VAR:-default}` and the like fail the replay."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name is None:
            raise NotImplementedError(f"the replay does not know {match.group(0)!r}")
        return variables.get(name, "")

    return re.sub(r"\$\{(\w+)\}|\$(\w+)|\$\{[^}]*\}", sub, text)


def commands(run: str) -> list[list[str]]:
    """The commands a RUN line runs, as argv lists: `a && b` both, `[ x = y ] || c` c unless x is y."""
    test, guarded, rest = run.partition(" || ")
    if guarded:
        argv = shlex.split(test)
        assert len(argv) == 5, f"the replay does not know {test!r}"
        assert argv[::2] == ["[", "=", "]"], f"the replay does not know {test!r}"
        if argv[1] == argv[3]:
            return []
        run = rest
    return [shlex.split(part) for part in run.split("&&")]


class DockerIgnore:
    """The subset of .dockerignore the project uses: `**`, `*`, `!exceptions`, last match wins, parents count."""

    def __init__(self, context: Path) -> None:
        path = context / ".dockerignore"
        lines = path.read_text().splitlines() if path.exists() else []
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = line.lstrip("!").strip("/")
            regex = re.escape(pattern).replace(r"\*\*", "\0").replace(r"\*", "[^/]*").replace("\0", ".*")
            self.rules.append((negate, re.compile(f"^{regex}$")))

    def excluded(self, rel: PurePosixPath) -> bool:
        candidates = [str(rel), *(str(parent) for parent in rel.parents if str(parent) != ".")]
        excluded = False
        for negate, regex in self.rules:
            if any(regex.match(c) for c in candidates):
                excluded = not negate
        return excluded


@dataclass
class Image:
    """A replayed image: its file system folder, its environment, its Python and the command it runs."""

    root: Path
    python: Path
    site: Path
    base_site: Path
    env: dict[str, str] = field(default_factory=dict)
    cmd: list[str] = field(default_factory=list)
    workdir: str = "/var/task"
    user: str = "root"
    healthcheck: str = ""

    def host(self, container_path: str) -> Path:
        """Where a path of the image lives in the replay (the host's Python version in venv paths)."""
        path = PurePosixPath(container_path)
        if path == PurePosixPath(IMAGE_SITE) or PurePosixPath(IMAGE_SITE) in path.parents:
            return self.base_site / path.relative_to(IMAGE_SITE)
        return self.root / re.sub(r"lib/python3\.\d+/", HOST_PYLIB, str(path).lstrip("/"))

    def host_env(self) -> dict[str, str]:
        """The image's environment with its absolute paths pointing into the replay."""
        mapped = {}
        for name, value in self.env.items():
            if name == "PATH":
                parts = [str(self.host(p)) if p.startswith("/") else p for p in value.split(":") if p]
                mapped[name] = ":".join([*parts, os.environ.get("PATH", "/usr/bin:/bin")])
            else:
                mapped[name] = str(self.host(value)) if value.startswith("/") else value
        return mapped


def make_venv(path: Path, extra_site: Path | None = None) -> tuple[Path, Path]:
    """A venv without pip (the host's pip installs into it via --python); returns (python, site-packages)."""
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
    )
    if extra_site is not None:
        (site / "_base_image.pth").write_text(f"{extra_site}\n")
    return python, site


class Builder:
    """Replays Dockerfiles; `base_images` maps an image name to the Dockerfile and context that build it."""

    def __init__(self, workdir: Path, base_images: dict[str, tuple[Path, Path]], log: Path) -> None:
        self.workdir = workdir
        self.base_images = base_images
        self.log = log
        self._built: dict[str, Image] = {}

    def build(self, name: str, dockerfile: Path, context: Path, build_args: dict[str, str] | None = None) -> Image:
        """Replay `dockerfile` as `docker build --build-arg K=V ...` would, with `context` as build context."""
        image: Image | None = None
        given = build_args or {}
        # As in Docker, an ARG is seen once declared: before the first FROM by FROM lines only (and by a stage that
        # declares it again), in a stage until the stage ends; a build argument never declared is not seen at all.
        global_args: dict[str, str] = {}
        args = global_args
        ignore = DockerIgnore(context)
        stages: dict[str, Image] = {}
        for keyword, raw in instructions(dockerfile):
            if keyword == "ARG":
                key, _, default = raw.partition("=")
                args[key] = given.get(key, default or global_args.get(key, ""))
                continue
            if keyword == "FROM":
                ref, _, stage = expand(raw, global_args).partition(" AS ")
                image = self._from(f"{name}/{stage.strip() or len(stages)}", ref.strip())
                stages[stage.strip() or str(len(stages))] = image
                args = {}
                continue
            assert image is not None, f"{dockerfile}: {keyword} before FROM"
            variables = {**args, **image.env}
            if keyword == "ENV":
                for pair in shlex.split(raw):
                    key, _, value = pair.partition("=")
                    image.env[key] = expand(value, variables)
                    variables[key] = image.env[key]
            elif keyword == "COPY" and raw.startswith("--from="):
                stage, *parts = shlex.split(expand(raw, variables).removeprefix("--from="))
                assert stage in stages, f"COPY --from={stage}: only earlier stages are replayed"
                src, dest = parts
                shutil.copytree(stages[stage].host(src), image.host(dest), symlinks=True, dirs_exist_ok=True)
            elif keyword == "COPY":
                self._copy(image, context, ignore, shlex.split(expand(raw, variables)))
            elif keyword == "RUN":
                self._run(image, expand(raw, variables))
            elif keyword == "CMD":
                image.cmd = json.loads(raw)
            elif keyword == "WORKDIR":
                image.workdir = expand(raw, variables)
                image.host(image.workdir).mkdir(parents=True, exist_ok=True)
            elif keyword == "USER":
                image.user = raw
            elif keyword == "HEALTHCHECK":
                image.healthcheck = raw
            elif keyword not in ("LABEL", "EXPOSE"):
                raise NotImplementedError(f"{dockerfile}: the replay does not know {keyword}")
        assert image is not None, f"{dockerfile}: no FROM"
        return image

    def _from(self, name: str, ref: str) -> Image:
        if ref == LAMBDA_BASE:
            python, site = make_venv(self.workdir / name / "venv")
            root = self.workdir / name / "rootfs"
            image = Image(root=root, python=python, site=site, base_site=site, env=dict(IMAGE_ENV))
        elif ref in PYTHON_BASES:
            # The official Python image: its interpreter, nothing installed; WORKDIR defaults to /.
            python, site = make_venv(self.workdir / name / "system-python")
            root = self.workdir / name / "rootfs"
            image = Image(root=root, python=python, site=site, base_site=site, workdir="/")
        elif ref in self.base_images:
            base = self._built.get(ref)
            if base is None:
                dockerfile, context = self.base_images[ref]
                base = self._built[ref] = self.build(ref.replace("/", "_").replace(":", "_"), dockerfile, context)
            python, site = make_venv(self.workdir / name / "venv", extra_site=base.site)
            root = self.workdir / name / "rootfs"
            shutil.copytree(base.root, root, symlinks=True)
            image = Image(root=root, python=python, site=site, base_site=base.site, env=dict(base.env))
        else:
            raise NotImplementedError(f"unknown base image {ref!r}")
        image.host("/var/task").mkdir(parents=True, exist_ok=True)
        image.host("/tmp").mkdir(parents=True, exist_ok=True)
        return image

    def _copy(self, image: Image, context: Path, ignore: DockerIgnore, parts: list[str]) -> None:
        *sources, dest = parts
        assert sources, parts
        dest_is_dir = dest.endswith("/") or len(sources) > 1
        for source in sources:
            src = context / source
            rel = PurePosixPath(source)
            assert src.exists(), f"COPY {source}: not in the build context"
            assert not ignore.excluded(rel), f"COPY {source}: not in the build context"
            if src.is_dir():
                target = image.host(dest)
                for path in sorted(src.rglob("*")):
                    sub = PurePosixPath(path.relative_to(context).as_posix())
                    if path.is_file() and not ignore.excluded(sub):
                        out = target / path.relative_to(src)
                        out.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(path, out)
            else:
                target = image.host(dest) / src.name if dest_is_dir else image.host(dest)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)

    def _run(self, image: Image, command: str) -> None:
        for argv in commands(command):
            if argv[:2] == ["pip", "install"]:
                self._pip_install(image, argv[2:])
            elif argv[:1] == ["rm"]:
                for target in (a for a in argv[1:] if not a.startswith("-")):
                    path = image.host(target)
                    if path.is_dir():
                        shutil.rmtree(path)
                    elif path.exists():
                        path.unlink()
            elif argv[:2] == ["python", "-c"] and len(argv) == 3:
                self._exec(image, [str(image.python), "-I", "-c", argv[2]])
            elif argv[:3] == ["python", "-m", "venv"] and len(argv) == 4:
                make_venv(image.host(argv[3]))
            elif len(argv) > 1 and argv[0].endswith("/bin/pip") and argv[1] == "install":
                venv_python = image.host(argv[0]).parent / "python"
                self._pip_install(image, argv[2:], python=venv_python)
            elif argv[:1] == ["useradd"]:
                pass  # users do not exist in the replay; USER is recorded and checked by the tests
            elif argv[:2] == ["install", "-d"]:
                image.host(argv[-1]).mkdir(parents=True, exist_ok=True)
            else:
                raise NotImplementedError(f"the replay does not know RUN {shlex.join(argv)!r}")

    def _pip_install(self, image: Image, args: list[str], python: Path | None = None) -> None:
        argv = [sys.executable, "-m", "pip", "--python", str(python or image.python), "install", "--quiet"]
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--no-cache-dir":
                pass  # the replay keeps pip's cache: same packages, much faster
            elif arg == "-r":
                argv += ["-r", str(image.host(args[i + 1]))]
                i += 1
            elif arg.startswith("-"):
                raise NotImplementedError(f"the replay does not know pip option {arg}")
            elif arg.startswith("/"):
                path, bracket, extras = arg.partition("[")
                argv.append(str(image.host(path)) + bracket + extras)
            else:
                argv.append(arg)
            i += 1
        self._exec(image, argv, cwd=self.workdir)

    def _exec(self, image: Image, argv: list[str], cwd: Path | None = None) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(image.host("/tmp")), **image.host_env()}
        for key in ("PIP_FIND_LINKS", "PIP_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_DISABLE_PIP_VERSION_CHECK"):
            if key in os.environ:
                env[key] = os.environ[key]
        env["PIP_CACHE_DIR"] = os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
        with self.log.open("a") as log:
            log.write(f"$ {' '.join(argv)}\n")
            log.flush()
            run = subprocess.run(
                argv,
                cwd=cwd or image.host(image.workdir),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=PIP_TIMEOUT,
                check=False,
            )
        if run.returncode != 0:
            tail = self.log.read_text()[-4000:]
            raise AssertionError(f"replayed step failed ({run.returncode}): {' '.join(argv)}\n{tail}")
