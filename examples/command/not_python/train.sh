#!/bin/sh
# A training program that is not Python: POSIX sh + awk. Fits a 1-D logistic regression by gradient
# descent on a toy data set it generates (200 points, the same for every seed; the seed picks the
# initial weights), and prints one line per epoch:
#
#   epoch 3 train_loss 0.412345 valid_loss 0.523456 valid_acc 0.880000
#
# Usage: train.sh [--lr 0.5] [--epochs 20] [--seed 0]       (--lr=0.5 works too)
#
# Signals: SIGUSR2 or SIGTERM stop it; it exits 128 + the signal number (140, 143), never 0.
# Needs only sh, awk, mktemp and a `sleep` that takes fractions (GNU coreutils, busybox, BSD).
set -eu

lr=0.5
epochs=20
seed=0
while [ $# -gt 0 ]; do
  case $1 in
    --lr=*) lr=${1#*=} ;;
    --epochs=*) epochs=${1#*=} ;;
    --seed=*) seed=${1#*=} ;;
    --lr | --epochs | --seed)
      [ $# -ge 2 ] || { echo "train.sh: $1 needs a value" >&2; exit 2; }
      name=${1#--}; eval "$name=\$2"; shift ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "train.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

tmp=$(mktemp -d)
pid=
trap 'rm -rf "$tmp"' EXIT
# The trainer runs in the background so that `wait` returns at once when a signal comes (a foreground
# child would delay the trap until it ended); the trap stops it and exits 128 + signal number.
stop() {
  echo "train.sh: $1: stopping" >&2
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  exit "$2"
}
trap 'stop SIGUSR2 140' USR2
trap 'stop SIGTERM 143' TERM

# The data file: x uniform in [-3, 3], label 1 when x + noise > 0.5; 150 train rows, then 50 valid rows.
awk 'BEGIN {
  srand(12345)
  for (i = 0; i < 200; i++) {
    x = 6 * rand() - 3
    noise = sqrt(-2 * log(1 - rand())) * cos(6.283185307179586 * rand())
    printf "%s %.6f %d\n", (i < 150 ? "train" : "valid"), x, (x + 0.8 * noise > 0.5)
  }
}' > "$tmp/data.txt"

awk -v lr="$lr" -v epochs="$epochs" -v seed="$seed" '
function sigmoid(z) { return 1 / (1 + exp(-z)) }
function nll(p, y) { return -(y * log(p + 1e-12) + (1 - y) * log(1 - p + 1e-12)) }
$1 == "train" { tx[nt] = $2; ty[nt++] = $3 }
$1 == "valid" { vx[nv] = $2; vy[nv++] = $3 }
END {
  srand(seed)
  w = 2 * rand() - 1; b = 2 * rand() - 1
  for (epoch = 1; epoch <= epochs; epoch++) {
    gw = 0; gb = 0; loss = 0
    for (i = 0; i < nt; i++) {
      p = sigmoid(w * tx[i] + b)
      loss += nll(p, ty[i]); gw += (p - ty[i]) * tx[i]; gb += p - ty[i]
    }
    w -= lr * gw / nt; b -= lr * gb / nt
    vloss = 0; correct = 0
    for (i = 0; i < nv; i++) {
      p = sigmoid(w * vx[i] + b)
      vloss += nll(p, vy[i]); correct += ((p > 0.5) == vy[i])
    }
    printf "epoch %d train_loss %.6f valid_loss %.6f valid_acc %.6f\n", epoch, loss / nt, vloss / nv, correct / nv
    fflush()
    system("sleep 0.05")
  }
}' "$tmp/data.txt" &
pid=$!
wait "$pid"
