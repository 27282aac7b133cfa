#!/usr/bin/env bash
# Spark GPU discovery script: prints the GPUs of this node as Spark's ResourceInformation JSON, e.g.
#   {"name":"gpu","addresses":["0","1","2","3"]}
# Point spark.executor.resource.gpu.discoveryScript (YARN, Kubernetes) or
# spark.worker.resource.gpu.discoveryScript (standalone) at it; see docs/cluster.md.
# Addresses are nvidia-smi indices, which are what CUDA_VISIBLE_DEVICES and torch ordinals use.
set -euo pipefail
if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu_discovery.sh: nvidia-smi not found on $(hostname); is the NVIDIA driver installed?" >&2
  exit 1
fi
addresses=$(nvidia-smi --query-gpu=index --format=csv,noheader | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' \
  | awk 'NF { printf "%s\"%s\"", (n++ ? "," : ""), $0 }')
echo "{\"name\":\"gpu\",\"addresses\":[${addresses}]}"
