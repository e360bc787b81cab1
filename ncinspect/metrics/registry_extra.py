"""Registry rows of the 0.3 keys: the opt-in spectra and the OOD scores' AUROC and FPR95.

Plain data (no numpy, no IO), built into :mod:`.registry`'s entries: ``(key, group,
direction, title, formula, invariances it lacks, reference, short title)``. A spectral
metric is a function of the features' spectrum only: every invariance holds. The OOD keys
rank ID rows against OOD rows of one score. A feature scale moves ``nci`` and ``maxlogit``
when there is a bias (``argmax_c (a W h + b)_c`` and the ranking of ``max_c`` change with a;
``nci``'s ``- alpha ||h||_1`` too when alpha > 0); ``ncspan`` has every invariance.
"""

from __future__ import annotations

__all__ = ["OOD_SCORES", "OOD_SCORE_ROWS", "SPECTRA_ROWS"]

#: The per-row OOD scores (higher = more in-distribution) behind the ``ood_*`` keys.
OOD_SCORES: tuple[str, ...] = ("ncspan", "nci", "maxlogit")

_REFS = {
    "ncspan": "Ammar et al. 2024 (NECO)",
    "nci": "Liu & Qin 2024",
    "maxlogit": "Hendrycks et al. 2022",
}
_SCORES = {
    "ncspan": "||P_M~ (h - mu_G)|| / ||h - mu_G||",
    "nci": "cos(h - mu_G, w_pred(h)) - alpha ||h||_1",
    "maxlogit": "max_c (W h + b)_c",
}
_LACKS = {"ncspan": (), "nci": ("feature_scale",), "maxlogit": ("feature_scale",)}

OOD_SCORE_ROWS: tuple[tuple, ...] = (
    *(
        (f"ood_auroc_{s}", "OOD", "higher", f"AUROC of ID vs OOD rows by {s} (0.5 = chance)",
         f"P(s_id > s_ood) + P(s_id = s_ood)/2, s = {_SCORES[s]}", _LACKS[s], _REFS[s],
         f"AUROC {s}")
        for s in OOD_SCORES
    ),
    *(
        (f"ood_fpr95_{s}", "OOD", "lower",
         f"OOD rows kept by {s} at the threshold keeping 95% of ID rows",
         "#{s_ood >= t} / N_ood, t the largest with #{s_id >= t} >= 0.95 N_id, "
         f"s = {_SCORES[s]}", _LACKS[s], _REFS[s], f"FPR95 {s}")
        for s in OOD_SCORES
    ),
)  # fmt: skip

SPECTRA_ROWS: tuple[tuple, ...] = (
    ("rank_effective", "spectra", "info", "effective rank of the centred features",
     "exp(H(s/sum s)), s_k = sqrt(l_k), l_k the eigenvalues of Sigma_T", (),
     "Roy & Vetterli 2007", "erank"),
    ("rank_effective_within", "spectra", "info", "effective rank of Sigma_W",
     "exp(H(s/sum s)), s_k = sqrt(eigenvalues of Sigma_W)", (), "Roy & Vetterli 2007",
     "erank W"),
    ("rank_effective_means", "spectra", "info",
     "effective rank of the centred class means (C-1 at a simplex ETF)",
     "exp(H(s/sum s)), s_k the singular values of M~", (), "Roy & Vetterli 2007",
     "erank means"),
    ("rankme", "spectra", "higher", "RankMe of the uncentred feature matrix",
     "exp(-sum p log p), p = s'/sum s' + 1e-7, s' the singular values of H (N x d)", (),
     "Garrido et al. 2023", "RankMe"),
    ("stable_rank", "spectra", "info", "Tr(Sigma_T) / largest eigenvalue", "Tr(Sigma_T) / l_1",
     (), "", "stable rank"),
    ("alpha_req", "spectra", "info", "power-law decay exponent of the eigenspectrum",
     "-slope of the LS fit of log l_k on log k, k <= K = #{l_k > 1e-12 l_1}", (),
     "Agrawal et al. 2022", "alpha-ReQ"),
)  # fmt: skip
