"""The images `make images` builds (scripts/images.sh): every Dockerfile is built, takes its
base image as a build argument (the public default for people with a registry, the local
one here), runs as the shared non-root user with a health check, gets pip's and apt's
machine settings only as build secrets, names no download URL, copies nothing the
.dockerignore leaves out, installs ffmpeg (the shared package's `media` extra) only in the
gateway and worker images, the edge image runs the agent `jobgate-edge` with nginx, and the
images are the ones docker-compose.yml runs. Building
them belongs to `make images`/`make smoke-images` (minutes); these checks read files (and
import the auth and stats packages once).
Each check is also shown to catch a broken copy, so none passes by looking at nothing."""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
IMAGES_SH = ROOT / "scripts" / "images.sh"
EDGE_SH = ROOT / "scripts" / "edge.sh"
PYTHON_BASE = "deploy/images/python-base.Dockerfile"
USER_UID = "10001"
# Places where Dockerfiles are not looked for: local state and installed packages.
NOT_SOURCE = {".git", ".venv", "var", "node_modules", "build"}


def built_images(text: str | None = None) -> dict[str, tuple[str, str]]:
    """scripts/images.sh's IMAGES: name -> (Dockerfile, base kind)."""
    text = IMAGES_SH.read_text() if text is None else text
    block = re.search(r"^IMAGES=\((.*?)^\)", text, re.M | re.S)
    assert block, "IMAGES=( ... ) not found in scripts/images.sh"
    entries = re.findall(r'"([a-z-]+)\|([^|"]+)\|(python|debian)"', block.group(1))
    return {name: (dockerfile, kind) for name, dockerfile, kind in entries}


def repo_dockerfiles() -> set[str]:
    found = set()
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if NOT_SOURCE.intersection(rel.parts) or not path.is_file():
            continue
        if path.name == "Dockerfile" or path.name.endswith(".Dockerfile"):
            found.add(rel.as_posix())
    return found


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments out."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            word, _, rest = full.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (a FROM starts one); what precedes the first
    FROM (global ARGs) is stage 0's prologue and left out."""
    result: list[list[tuple[str, str]]] = []
    for ins in instructions(text):
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


# --- the checks (each returns its problems, so a broken copy can be shown to fail) -----------


def base_image_problems(text: str) -> list[str]:
    """ARG BASE_IMAGE with a public, tagged default first; every FROM is it or a stage."""
    problems = []
    ins = instructions(text)
    if not ins or ins[0][0] != "ARG" or not ins[0][1].startswith("BASE_IMAGE="):
        return ["the first instruction is not ARG BASE_IMAGE=<default>"]
    default = ins[0][1].split("=", 1)[1]
    if ":" not in default or default.endswith(":latest") or default.startswith("localhost/"):
        problems.append(f"BASE_IMAGE's default {default!r} is not a public image with a tag")
    names: set[str] = set()
    for word, rest in ins:
        if word != "FROM":
            continue
        parts = rest.split()
        if parts[0] != "${BASE_IMAGE}" and parts[0] not in names:
            problems.append(f"FROM {parts[0]} is neither ${{BASE_IMAGE}} nor an earlier stage")
        if len(parts) == 3 and parts[1].upper() == "AS":
            names.add(parts[2])
    return problems


def runtime_problems(text: str) -> list[str]:
    """The final stage: the shared uid, a non-root USER, a HEALTHCHECK and a CMD."""
    final = stages(text)[-1]
    words = [w for w, _ in final]
    problems = []
    runs = " ".join(rest for w, rest in final if w == "RUN")
    if f"--uid {USER_UID}" not in runs or f"--gid {USER_UID}" not in runs:
        problems.append(f"the final stage does not make the user and group {USER_UID}")
    users = [rest for w, rest in final if w == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the final stage does not switch to a non-root USER")
    for needed in ("HEALTHCHECK", "CMD"):
        if needed not in words:
            problems.append(f"the final stage has no {needed}")
    return problems


SECRET = re.compile(r"--mount=type=secret,id=([\w.-]+)")


def secret_problems(text: str, passed: set[str]) -> list[str]:
    """pip and apt installs mount the machine's settings as build secrets that
    scripts/images.sh passes, and nothing else reads them."""
    problems = []
    for word, rest in instructions(text):
        if word != "RUN":
            continue
        mounted = set(SECRET.findall(rest))
        for unknown in sorted(mounted - passed):
            problems.append(f"secret {unknown!r} is mounted but scripts/images.sh passes none")
        if "pip install" in rest and not {"pip.conf", "build-ca"} <= mounted:
            problems.append("a pip install does not mount the pip.conf and build-ca secrets")
        if "apt-get install" in rest and not {"apt.conf", "build-ca"} <= mounted:
            problems.append("an apt-get install does not mount the apt.conf and build-ca secrets")
    return problems


def passed_secrets(text: str | None = None) -> set[str]:
    text = IMAGES_SH.read_text() if text is None else text
    return set(re.findall(r'--secret "id=([\w.-]+),src=', text))


URL = re.compile(r"\b(?:https?|ftp)://(?!127\.0\.0\.1\b|localhost\b)[A-Za-z0-9]")


def url_problems(name: str, text: str) -> list[str]:
    """No download URL in a committed image file: mirrors and indexes come from the machine."""
    return [
        f"{name}:{n}: {line.strip()}"
        for n, line in enumerate(text.splitlines(), 1)
        if URL.search(line)
    ]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore's patterns leave `path` (or a folder above it) out."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatch(prefix.rsplit("/", 1)[-1], bare)
            ):
                return True
    return False


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def copy_problems(text: str, patterns: list[str]) -> list[str]:
    """Every COPY from the context names files the .dockerignore keeps in the context."""
    problems = []
    for word, rest in instructions(text):
        if word != "COPY" or "--from=" in rest:
            continue
        for source in rest.split()[:-1]:
            if not (ROOT / source).exists():
                problems.append(f"COPY {source}: no such file in the repository")
            elif ignored(source, patterns):
                problems.append(f"COPY {source}: left out of the build context by .dockerignore")
    return problems


# --- the repository's files ------------------------------------------------------------------


def test_every_dockerfile_is_built_by_make_images():
    images = built_images()
    assert {"gateway", "auth", "stats", "worker", "edge"} <= set(images)
    built = {dockerfile for dockerfile, _ in images.values()} | {PYTHON_BASE}
    assert repo_dockerfiles() == built
    assert PYTHON_BASE in IMAGES_SH.read_text()


def test_a_new_dockerfile_make_images_forgets_is_noticed():
    images = built_images(
        IMAGES_SH.read_text().replace('  "edge|deploy/nginx/Dockerfile|python"\n', "")
    )
    assert "deploy/nginx/Dockerfile" not in {d for d, _ in images.values()}
    assert repo_dockerfiles() != {d for d, _ in images.values()} | {PYTHON_BASE}


ALL_DOCKERFILES = sorted({d for d, _ in built_images().values()} | {PYTHON_BASE})
SERVICE_DOCKERFILES = sorted(d for d, _ in built_images().values())


@pytest.mark.parametrize("dockerfile", ALL_DOCKERFILES)
def test_the_base_image_is_a_build_argument_with_a_public_default(dockerfile):
    assert base_image_problems((ROOT / dockerfile).read_text()) == []


def test_a_hard_coded_or_untagged_base_image_is_caught():
    text = (ROOT / "gateway" / "Dockerfile").read_text()
    hard = text.replace("FROM ${BASE_IMAGE}\n", "FROM python:3.11-slim\n", 1)
    assert any("FROM python:3.11-slim" in p for p in base_image_problems(hard))
    latest = text.replace(
        "ARG BASE_IMAGE=python:3.11-slim-bookworm", "ARG BASE_IMAGE=python:latest"
    )
    assert any("default" in p for p in base_image_problems(latest))
    assert base_image_problems(text.replace("ARG BASE_IMAGE=python:3.11-slim-bookworm\n", ""))


def test_the_python_base_kind_matches_what_the_dockerfile_needs():
    """Images whose default base is Python's get the local python-base, the others Debian's."""
    for dockerfile, kind in built_images().values():
        default = instructions((ROOT / dockerfile).read_text())[0][1]
        assert (kind == "python") == default.startswith("BASE_IMAGE=python:"), dockerfile


@pytest.mark.parametrize("dockerfile", SERVICE_DOCKERFILES)
def test_service_images_run_as_the_shared_non_root_user_with_a_health_check(dockerfile):
    assert runtime_problems((ROOT / dockerfile).read_text()) == []


def test_a_root_image_without_health_check_is_caught():
    text = (ROOT / "worker-service" / "Dockerfile").read_text()
    broken = text.replace("USER jobgate:jobgate", "USER root").replace("HEALTHCHECK", "# HC")
    problems = runtime_problems(broken)
    assert any("non-root" in p for p in problems) and any("HEALTHCHECK" in p for p in problems)
    assert runtime_problems(text.replace("--uid 10001", "--uid 1000"))


@pytest.mark.parametrize("dockerfile", ALL_DOCKERFILES)
def test_installs_get_machine_settings_only_as_build_secrets(dockerfile):
    assert passed_secrets() == {"pip.conf", "build-ca", "apt.conf"}
    assert secret_problems((ROOT / dockerfile).read_text(), passed_secrets()) == []


def test_an_install_without_the_secrets_is_caught():
    text = (ROOT / "gateway" / "Dockerfile").read_text()
    bare = re.sub(r"--mount=type=secret,id=[\w.-]+(,target=\S+)? \\\n\s*", "", text)
    assert "pip install" in bare and "--mount" not in bare
    assert secret_problems(bare, passed_secrets()) == [
        "a pip install does not mount the pip.conf and build-ca secrets"
    ]
    assert secret_problems(text, passed_secrets() - {"pip.conf"})


def test_no_download_url_in_the_image_files():
    files = [ROOT / d for d in ALL_DOCKERFILES] + [IMAGES_SH, ROOT / ".dockerignore"]
    files += [p for p in (ROOT / "deploy" / "images").rglob("*") if p.is_file()]
    problems = [p for f in files for p in url_problems(f.name, f.read_text())]
    assert problems == []
    assert url_problems("x", "RUN pip install --index-url https://pypi.example/simple x")
    assert url_problems("x", "deb http://deb.debian.org/debian bookworm main")
    assert not url_problems("x", 'SMOKE_API=http://127.0.0.1:15672 ("http://", "https://")')


@pytest.mark.parametrize("dockerfile", ALL_DOCKERFILES)
def test_what_the_dockerfiles_copy_is_in_the_build_context(dockerfile):
    assert copy_problems((ROOT / dockerfile).read_text(), dockerignore()) == []


def test_the_build_context_leaves_out_local_state_and_secrets():
    patterns = dockerignore()
    for path in (".git", ".venv", "var/dev.env", ".env", "tests/e2e", "shared/src/x.egg-info"):
        assert ignored(path, patterns), path
    assert not ignored("shared/src/jobgate/config.py", patterns)
    text = (ROOT / "gateway" / "Dockerfile").read_text()
    assert copy_problems(text, [*patterns, "shared"]) == [
        "COPY shared/: left out of the build context by .dockerignore"
    ]
    assert copy_problems(text.replace("COPY gateway/", "COPY gatewy/"), patterns)


def test_the_edge_image_carries_every_template_edge_sh_reads():
    copied = " ".join(
        rest
        for word, rest in instructions((ROOT / "deploy" / "nginx" / "Dockerfile").read_text())
        if word == "COPY"
    )
    assert "scripts/edge.sh /opt/jobgate/scripts/edge.sh" in copied
    templates = set(re.findall(r"\$TEMPLATES/([\w.-]+)", EDGE_SH.read_text()))
    assert templates == {"jobgate.conf.template", "nginx.conf.template"}
    for template in templates:
        assert f"deploy/nginx/{template}" in copied, template
    assert copied.rstrip().endswith("/opt/jobgate/deploy/nginx/")


EDGE_DOCKERFILE = ROOT / "deploy" / "nginx" / "Dockerfile"
EDGE_IMAGE_SCRIPT = "/opt/jobgate/scripts/edge.sh"  # where the image copies scripts/edge.sh


def edge_image_problems(text: str) -> list[str]:
    """The edge image: nginx and the agent (jobgate-edge, with the shared package, pinned by
    constraints.txt as the other Python images) in the final stage, the agent as the command,
    its settings pointing at the image's own files, its state under /tmp (the root filesystem
    may be read-only), and SIGQUIT (graceful: the agent forwards it to nginx) to stop it."""
    problems = []
    all_ins = instructions(text)
    final = stages(text)[-1]
    pip = " ".join(rest for w, rest in all_ins if w == "RUN" and "pip install" in rest)
    if "-c constraints.txt" not in pip:
        problems.append("pip install is not pinned by constraints.txt")
    for package in ("./shared", "./edge-agent"):
        if not re.search(rf'"?{re.escape(package)}(\[[^\]]*\])?"?(\s|$)', pip):
            problems.append(f"pip install does not install {package}")
    copied = " ".join(rest for w, rest in all_ins if w == "COPY")
    for source in ("constraints.txt", "shared/", "edge-agent/"):
        if not re.search(rf"(^|\s){re.escape(source)}\s", copied + " "):
            problems.append(f"{source} is not copied into the build")
    runs = " ".join(rest for w, rest in final if w == "RUN")
    if not re.search(r"apt-get install .*\bnginx\b", runs):
        problems.append("the final stage does not install nginx")
    if not any(w == "COPY" and "--from=build" in rest and "/opt/venv" in rest for w, rest in final):
        problems.append("the final stage does not take the build stage's venv")
    env: dict[str, str] = {}
    for word, rest in final:
        if word == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", rest))
    state = env.get("EDGE_STATE_DIR", "")
    if not state.startswith("/tmp/"):
        problems.append(f"EDGE_STATE_DIR {state!r} is not under /tmp")
    if env.get("EDGE_SCRIPT", EDGE_IMAGE_SCRIPT) != EDGE_IMAGE_SCRIPT:
        problems.append(f"EDGE_SCRIPT {env['EDGE_SCRIPT']} is not the copied scripts/edge.sh")
    cmds = [rest for w, rest in final if w == "CMD"]
    if not cmds or cmds[-1] != '["jobgate-edge"]':
        problems.append(f"the command is not jobgate-edge: {cmds[-1:] or None}")
    stops = [rest for w, rest in final if w == "STOPSIGNAL"]
    if stops[-1:] != ["SIGQUIT"]:
        problems.append(f"STOPSIGNAL is {stops[-1:] or None}, not SIGQUIT (graceful)")
    return problems


def test_the_edge_image_runs_the_agent_with_nginx():
    assert edge_image_problems(EDGE_DOCKERFILE.read_text()) == []
    # The agent is what the image's Python environment installs as `jobgate-edge`.
    project = tomllib.loads((ROOT / "edge-agent" / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["jobgate-edge"] == "jobgate_edge.__main__:main"
    # The image's default script is the one settings.py falls back to.
    settings = (ROOT / "edge-agent" / "src" / "jobgate_edge" / "settings.py").read_text()
    assert 'Path("/opt/jobgate/scripts/edge.sh")' in settings


def test_the_edge_image_check_catches_a_broken_copy():
    text = EDGE_DOCKERFILE.read_text()
    for change, problem in (
        (
            lambda s: s.replace(
                'CMD ["jobgate-edge"]', 'CMD ["/opt/jobgate/scripts/edge.sh", "serve"]'
            ),
            "the command is not jobgate-edge",
        ),
        (lambda s: s.replace(" ./edge-agent", ""), "does not install ./edge-agent"),
        (lambda s: s.replace("-c constraints.txt ", ""), "not pinned by constraints.txt"),
        (lambda s: s.replace("STOPSIGNAL SIGQUIT", "STOPSIGNAL SIGTERM"), "not SIGQUIT"),
        (
            lambda s: s.replace("EDGE_STATE_DIR=/tmp/edge", "EDGE_STATE_DIR=/var/lib/edge"),
            "is not under /tmp",
        ),
        (
            lambda s: s.replace("install -y --no-install-recommends nginx", "install -y curl"),
            "does not install nginx",
        ),
    ):
        broken = change(text)
        assert broken != text, problem
        assert any(problem in p for p in edge_image_problems(broken)), problem


def test_the_edge_agent_imports_without_the_shared_extras():
    """The edge image installs ./shared with no extra: neither the agent nor jobgate.proxy
    may import the web framework, the authentication libraries or ffmpeg's wheel."""
    blocked = ["flask", "flask_smorest", "webargs", "jwt", "cryptography", "requests"]
    blocked += ["cachetools", "imageio_ffmpeg"]
    # WITHOUT_FFMPEG (below) imports every module of the packages; these go first.
    script = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in blocked)
    script += WITHOUT_FFMPEG
    out = subprocess.run(
        [sys.executable, "-c", script, "jobgate_edge", "jobgate.proxy"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip() == "imported", out.stderr
    # The extras really are the packages blocked above.
    project = tomllib.loads((ROOT / "shared" / "pyproject.toml").read_text())["project"]
    names = {
        re.split(r"[<>=!~\[; ]", r)[0].replace("-", "_").lower()
        for extra in project["optional-dependencies"].values()
        for r in extra
    }
    module_of = {"pyjwt": "jwt"}
    assert {module_of.get(n, n) for n in names} <= set(blocked), names


def test_compose_runs_the_images_make_images_tags():
    """docker-compose.yml's built services use the names and Dockerfiles make images uses,
    so `make images` and `docker compose build` make the same images."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    by_dockerfile = {dockerfile: name for name, (dockerfile, _) in built_images().items()}
    seen = set()
    for service, spec in compose["services"].items():
        build = spec.get("build")
        if build is None:
            continue
        dockerfile = build["dockerfile"]
        assert dockerfile in by_dockerfile, f"{service}: {dockerfile} is not built by make images"
        assert spec["image"] == f"jobgate/{by_dockerfile[dockerfile]}:local", service
        seen.add(by_dockerfile[dockerfile])
    assert {"gateway", "auth", "stats", "worker", "edge"} <= seen


# --- what each image installs: ffmpeg only where it is used ----------------------------------

# Image -> its service's folder (the Python images), and the ones that need ffmpeg: the
# gateway probes uploads, the workers convert. The imageio-ffmpeg wheel is ~170 MB.
SERVICE_DIRS = {
    "gateway": "gateway",
    "auth": "auth-service",
    "stats": "stats-service",
    "worker": "worker-service",
    "edge": "edge-agent",
}
MEDIA_IMAGES = {"gateway", "worker"}
SHARED_EXTRA = re.compile(r'"?\./shared(?:\[([\w,-]*)\])?"?(?=\s)')


def extras_of(requirement: str) -> set[str]:
    """`name[a,b]` -> {a, b}."""
    found = re.search(r"\[([^\]]*)\]", requirement)
    return {e.strip() for e in found.group(1).split(",") if e.strip()} if found else set()


def shared_extras_installed(text: str) -> set[str] | None:
    """The extras a Dockerfile's pip install asks of ./shared (None: it installs no ./shared)."""
    for word, rest in instructions(text):
        if word == "RUN" and "pip install" in rest:
            found = SHARED_EXTRA.search(rest + " ")
            if found:
                return {e for e in (found.group(1) or "").split(",") if e}
    return None


def jobgate_extras_declared(service_dir: str) -> set[str]:
    """The extras a service's pyproject.toml asks of the shared package `jobgate`."""
    project = tomllib.loads((ROOT / service_dir / "pyproject.toml").read_text())["project"]
    (requirement,) = [d for d in project["dependencies"] if re.match(r"jobgate(\[|$|[<>=!~ ;])", d)]
    return extras_of(requirement)


def test_ffmpeg_is_an_extra_of_the_shared_package():
    project = tomllib.loads((ROOT / "shared" / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("imageio-ffmpeg") for d in project["dependencies"])
    assert project["optional-dependencies"]["media"] == ["imageio-ffmpeg"]


@pytest.mark.parametrize("image", sorted(SERVICE_DIRS))
def test_only_the_gateway_and_worker_images_get_ffmpeg(image):
    """The Dockerfile installs ./shared with the extras the service declares, and `media`
    (imageio-ffmpeg) is among them only for the images that run ffmpeg."""
    dockerfile = ROOT / built_images()[image][0]
    installed = shared_extras_installed(dockerfile.read_text())
    declared = jobgate_extras_declared(SERVICE_DIRS[image])
    assert installed == declared
    assert ("media" in declared) == (image in MEDIA_IMAGES)


def test_the_extras_check_reads_what_the_dockerfile_installs():
    text = (ROOT / "auth-service" / "Dockerfile").read_text()
    assert shared_extras_installed(text) == {"web"}
    assert shared_extras_installed(text.replace('"./shared[web]"', '"./shared[web,media]"')) == {
        "web",
        "media",
    }
    assert shared_extras_installed(text.replace('"./shared[web]"', "./shared")) == set()
    assert shared_extras_installed("FROM x\nRUN pip install ./auth-service\n") is None
    assert extras_of("jobgate[web, media]") == {"web", "media"}


# Imports every module of auth-service and stats-service with imageio_ffmpeg made
# unimportable (None in sys.modules), as in their images. wsgi modules are left out: they
# build the app (and reach for the database) when imported.
WITHOUT_FFMPEG = """
import importlib, pkgutil, sys
sys.modules["imageio_ffmpeg"] = None
for package in sys.argv[1:]:
    root = importlib.import_module(package)
    for module in pkgutil.walk_packages(root.__path__, package + "."):
        if not module.name.endswith(".wsgi"):
            importlib.import_module(module.name)
print("imported")
"""


def test_auth_and_stats_import_without_ffmpeg():
    out = subprocess.run(
        [sys.executable, "-c", WITHOUT_FFMPEG, "jobgate_auth", "jobgate_stats"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip() == "imported", out.stderr
    # jobgate.media imports it only when ffmpeg is looked for: gateway and worker code.
    for service in ("auth-service", "stats-service"):
        for path in (ROOT / service / "src").rglob("*.py"):
            assert not re.search(
                r"jobgate\.media|from jobgate import .*\bmedia\b", path.read_text()
            )
    # The blocked import really is blocked: ffmpeg's lookup fails the way the images would.
    lookup = "import sys; sys.modules['imageio_ffmpeg'] = None\nfrom jobgate import media\n"
    lookup += "media.ffmpeg_binary()"
    env = {k: v for k, v in os.environ.items() if k != "FFMPEG_BINARY"}
    failed = subprocess.run(
        [sys.executable, "-c", lookup], capture_output=True, text=True, timeout=60, env=env
    )
    assert failed.returncode != 0 and "imageio_ffmpeg" in failed.stderr


# --- deploy/images/pip_build_conf.py ---------------------------------------------------------


def pip_build_conf() -> ModuleType:
    path = ROOT / "deploy" / "images" / "pip_build_conf.py"
    spec = importlib.util.spec_from_file_location("pip_build_conf", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PIP_CONFIG_LIST = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.default-timeout='180'
:env:.find-links='/opt/wheels'
:env:.index-url='https://env.example/simple'
global.cert='/elsewhere/ca.crt'
global.index-url='https://global.example/simple'
global.extra-index-url='file:///opt/pypi/simple https://extra.example/simple'
install.trusted-host='extra.example'
global.trusted-host='ignored.example'
"""


def test_the_build_gets_the_pip_settings_pip_itself_would_use():
    settings = pip_build_conf().parse_config_list(PIP_CONFIG_LIST)
    assert settings["index-url"] == "https://env.example/simple"  # env over files
    assert settings["cert"] == "/etc/ssl/certs/ca-certificates.crt"
    assert settings["trusted-host"] == "extra.example"  # [install] over [global]
    assert settings["timeout"] == "180"  # PIP_DEFAULT_TIMEOUT's key


def test_the_build_pip_conf_keeps_remote_indexes_and_the_ca_as_a_secret(tmp_path):
    module = pip_build_conf()
    ca = tmp_path / "host-ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    out = tmp_path / "build-ca"
    conf = module.build_conf(
        {
            "index-url": "https://index.example/simple",
            "extra-index-url": "file:///opt/pypi/simple https://extra.example/simple",
            "find-links": "/opt/wheels",
            "constraint": "/etc/xdg/pip/constraints.txt",
            "cert": str(ca),
        },
        out,
    )
    assert conf.splitlines() == [
        "[global]",
        "index-url = https://index.example/simple",
        "extra-index-url = https://extra.example/simple",
        "cert = /run/secrets/build-ca",
    ]
    assert out.read_text() == ca.read_text()
    assert module.build_conf({"find-links": "/opt/wheels"}, out) == ""
