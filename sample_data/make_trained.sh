#!/bin/sh
# Regenerate the two trained dumps of the weight-decay experiment (docs/trainer.md):
#   trained_wd0.h5  the default network and data trained with --weight-decay 0
#   trained_wd.h5   the same with the default weight decay (lambda = 2e-3)
# The training is exactly that of the documented command pair
#   ncinspect train -o a.h5 --weight-decay 0      and      ncinspect train -o b.h5
# (same seed, same float64 arithmetic); only the storage is made smaller: float32 features,
# gzip, snapshots at epochs 0 and 6000 only, and a 20-per-class test split (the training data
# are drawn before the test data, so the test size does not change them). OPENBLAS_NUM_THREADS=1
# keeps the floating-point summation order fixed, so a rerun on the same machine gives the
# same numbers.
set -e  # NCINSPECT=/path/to/ncinspect overrides the command found on PATH
cd "$(dirname "$0")/.."
export OPENBLAS_NUM_THREADS=1
STORE="--features-dtype float32 --compress --save-every 6000 --n-test-per-class 20 -q"
"${NCINSPECT:-ncinspect}" train -o sample_data/trained_wd0.h5 --weight-decay 0 $STORE
"${NCINSPECT:-ncinspect}" train -o sample_data/trained_wd.h5 $STORE
