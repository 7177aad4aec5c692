"""The serving tests need no training kit: the serving image ships without it, and its tests show
that it can (their bundles come from `tests.serving.bundles`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def fresh_python(code: str) -> str:
    """What `code` prints in a new interpreter (nothing imported yet), which must succeed."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_no_serving_test_imports_the_training_kit() -> None:
    for path in Path(__file__).parent.rglob("*.py"):
        assert not re.search(r"^\s*(from|import) training\b", path.read_text(), re.M), path


def test_the_bundle_package_and_the_torchserve_handler_load_without_grpc() -> None:
    """What a venv without grpcio would see: any import of gRPC fails."""
    code = (
        "import sys\n"
        "for name in ('grpc', 'grpc_health', 'grpc_reflection'): sys.modules[name] = None\n"
        "import serving.bundle, serving.torchserve_handler\n"
        "from serving.bundle.tasks import TASKS\n"
        "print(sorted(TASKS))\n"
    )
    assert fresh_python(code) == "['classify', 'multilabel', 'pose', 'segmentation', 'sentiment']"


def test_the_bundle_and_the_training_tasks_load_no_protocol_code() -> None:
    """The offline packages speak no protocol: protobuf and the generated stubs stay out (the server's
    codecs hold what an answer looks like on the wire), checked on what actually loads."""
    code = (
        "import sys\n"
        "import serving.bundle, serving.bundle.tasks, serving.torchserve_handler, training.tasks\n"
        "protocol = ('grpc', 'google', 'serving.wire')\n"
        "print([m for m in sys.modules if m.startswith(protocol)])\n"
    )
    assert fresh_python(code) == "[]"


def test_every_bundle_task_has_a_codec_on_the_wire() -> None:
    from serving.bundle.tasks import TASKS
    from serving.server.codecs import CODECS

    assert sorted(CODECS) == sorted(TASKS)


def test_the_cli_and_its_health_probe_import_no_torch() -> None:
    """`serve-kit --help`, `settings` and `health` (the container's probe, every 10 s) load neither
    torch nor the bundle package: each call would cost seconds and a gigabyte."""
    code = (
        "import sys\n"
        "import serving, serving.cli\n"
        "from serving.server.probe import check_health\n"
        "print([m for m in ('torch', 'torchvision', 'onnxruntime', 'serving.bundle') if m in sys.modules])\n"
    )
    assert fresh_python(code) == "[]"


def test_a_prediction_on_the_onnx_runtime_never_imports_torch(bundle_path: Path, tag_images: Path) -> None:
    """The ONNX path is torch-free: the bundle unpickles (weights are bytes), checks, decodes, resizes,
    scales, runs and answers with Pillow, numpy and ONNX Runtime alone; a host without torch serves."""
    image = sorted((tag_images / "train").iterdir())[0]
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # any import of torch fails\n"
        "from pathlib import Path\n"
        "from serving.bundle import load_bundle\n"
        f"answers = load_bundle({str(bundle_path)!r}).predict([Path({str(image)!r})])\n"
        "print(sorted(answers[0]), [m for m in sys.modules if m.startswith('torch') and sys.modules[m]])\n"
    )
    assert fresh_python(code) == "['labels', 'scores'] []"
