#!/bin/sh
# Kept for old references: the script is sample_data/make_trained.py (PYTHON=... overrides python).
exec "${PYTHON:-python}" "$(dirname "$0")/make_trained.py" "$@"
