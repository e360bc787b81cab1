#!/usr/bin/env python
"""Train the bundled bias-free ReLU net to a critical point and write a dump for `theory`.

Inputs are constant within each class (class templates plus a shared offset vector,
:func:`ncinspect.experiments.template_data`), training is full-batch heavy-ball gradient descent
(:func:`ncinspect.experiments.converged_config`), so the gradient norm falls below 1e-12 and
``ncinspect theory`` shows every identity of spec/theory.md to ~1e-14::

    python examples/converged_theory.py -o converged.h5
    ncinspect theory converged.h5 --snapshot /epoch_8000 --tolerance 1e-6

``--asymmetric`` uses random templates instead: the outputs are class-constant but not
class-symmetric, and only the two identities of every critical point (balancedness,
stationarity) hold.
"""

from __future__ import annotations

import dataclasses
import sys
import time

import click


@click.command()
@click.option("-o", "--output", required=True, help="HDF5 dump to write (overwritten).")
@click.option("--n-per-class", type=int, default=50, show_default=True)
@click.option(
    "--weight-decay",
    type=float,
    default=1e-2,
    show_default=True,
    help="lambda (= Lambda here, since kappa = 1/N).",
)
@click.option("--epochs", type=int, default=8000, show_default=True)
@click.option("--asymmetric", is_flag=True, help="Random class templates (seed 0).")
def main(output, n_per_class, weight_decay, epochs, asymmetric):
    """Write OUTPUT with snapshots at epoch 0 and at the last epoch; print the gradient norm."""
    from ncinspect.experiments import converged_config, gradient_norm, template_data
    from ncinspect.train import fit

    data = template_data(n_per_class=n_per_class, symmetric=not asymmetric)
    config = dataclasses.replace(
        converged_config(data.X.shape[0], weight_decay=weight_decay),
        epochs=epochs,
        save_every=epochs,
    )
    start = time.perf_counter()
    hist = fit(config, data, dump=output)
    click.echo(
        f"{output}: {epochs} full-batch epochs in {time.perf_counter() - start:.1f} s; "
        f"gradient norm {gradient_norm(hist.params, data, config):.3g}"
    )


if __name__ == "__main__":
    sys.exit(main())
