#!/usr/bin/env bash
# Run the DVC pipeline as a named experiment in a fresh clone, then push the results (cluster drivers).
#
#   AVF_GIT_URL=https://git.example.org/team/avf.git infra/ray/run_dvc.sh NAME [dvc exp run args...]
#   e.g. infra/ray/run_dvc.sh pretrain-a10g pretrain -S ray.use_gpu=true -S ray.num_workers=4
#
# Used on a Ray head (cluster.yaml) and by the KubeRay RayJob (rayjob.yaml). DVC experiments are git
# refs, so the stages run in a git clone at AVF_GIT_REF (the image's commit by default, so that the
# driver runs the same avf code as the Ray workers) with that clone first on PYTHONPATH. Afterwards
# `dvc exp push` sends the experiment's git ref to the origin and its outputs to the default DVC
# remote; both need credentials in the environment (git credential helper / token URL, AWS_*).
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 EXP_NAME [dvc exp run targets and -S key=value ...]" >&2
  exit 2
fi
name="$1"
shift
: "${AVF_GIT_URL:?set AVF_GIT_URL to the git URL of the project}"
ref="${AVF_GIT_REF:-main}"
workdir="${AVF_WORKDIR:-$(mktemp -d -t avf-run-XXXXXX)}"

git clone --quiet "$AVF_GIT_URL" "$workdir"
cd "$workdir"
git checkout --quiet "$ref"
export PYTHONPATH="$workdir${PYTHONPATH:+:$PYTHONPATH}"
export RAY_ADDRESS="${RAY_ADDRESS:-auto}"  # join the cluster this runs on, not a private one
export DVC_NO_ANALYTICS=1 PYTHONUNBUFFERED=1

if [ -z "$(dvc remote list)" ]; then
  echo "error: no DVC remote in .dvc/config: results could not leave this machine" >&2
  exit 3
fi
dvc pull --allow-missing
dvc exp run -n "$name" "$@"
dvc exp push origin "$name"
echo "pushed experiment $name (based on $ref); fetch it with: dvc exp pull origin $name"
