"""Small-sample cluster-robust variance for a GLM, as R ``clubSandwich`` computes it.

For a GLM with mean ``mu = g^{-1}(X beta)``, variance function ``v(mu)`` and no prior
weights, ``clubSandwich::vcovCR(fit, cluster, type)`` (0.5.x; ``vcov_CR`` with the glm
methods ``model_matrix.glm``, ``weightMatrix.glm``, ``residuals_CS.glm``) works on the
linearised model

    Xd = diag(dmu/deta) X,   W = diag(1 / v),   Theta = W^{-1} = diag(v),   r = y - mu,
    M = (Xd' W Xd)^{-1}      (= R ``summary(glm)$cov.unscaled``),

and returns ``V = M (sum_j E_j r_j r_j' E_j') M`` with ``E_j = Xd_j' W_j A_j`` for cluster
``j``. The adjustment ``A_j`` is

* ``CR0``: the identity; ``CR1``: ``sqrt(J / (J - 1))`` times the identity (so CR1 equals
  R ``sandwich::vcovCL(fit, cluster = ~site)``, HC0 times J/(J-1));
* ``CR2`` (Bell & McCaffrey 2002; Pustejovsky & Tipton 2018, the "inverse variance" form
  that clubSandwich uses when no target is given):
  ``A_j = S_j G_j^{-1/2} S_j`` with ``S_j = diag(sqrt(v_j))`` and
  ``G_j = S_j (I - Xd_j M Xd_j' W_j) Theta_j S_j = diag(v_j^2) - S_j Xd_j M Xd_j' S_j``;
  the inverse square root is taken over eigenvalues above 1e-12 (others set to 0), as
  clubSandwich's ``matrix_power``.

Satterthwaite degrees of freedom for coefficient ``i`` (``coef_test(...,
test = "Satterthwaite")``; ``get_GH`` and ``get_P_array`` with ``inverse_var = TRUE``):
with ``g_ij = ||e_i' M E_j S_j||^2`` and ``h_ij = (M E_j Xd_j L)' e_i``, ``L L' = M``,
``P_i = diag(g_i) - H_i' H_i`` (``H_i`` has columns ``h_ij``) and
``df_i = tr(P_i)^2 / ||P_i||_F^2``, computed without forming the J x J matrix:
``||P_i||_F^2 = sum_j g_ij^2 - 2 sum_j g_ij ||h_ij||^2 + ||sum_j h_ij h_ij'||_F^2``.

Clusters are processed in batches of equal size (one batched eigendecomposition per
cluster size), not one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TYPES = ("CR2", "CR1", "CR0")


@dataclass
class ClusterRobust:
    """Cluster-robust covariance ``cov`` (p x p) and Satterthwaite ``df`` (p,)."""

    cov: np.ndarray
    df_satterthwaite: np.ndarray
    n_clusters: int


def _inv_sqrt_psd(g: np.ndarray, tol: float = 1e-12) -> np.ndarray:
    """Batched symmetric ``g^{-1/2}`` over eigenvalues > tol (clubSandwich ``matrix_power``)."""
    vals, vecs = np.linalg.eigh(g)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(vals > tol, vals, np.inf) ** -0.5
    return np.einsum("kab,kb,kcb->kac", vecs, p, vecs)


def _psd_factor(b: np.ndarray) -> np.ndarray:
    """A factor ``L`` with ``L L' = b`` that also exists when ``b`` is only semi-definite
    numerically (near-separated fits); the df use ``L`` only through ``L L'``."""
    vals, vecs = np.linalg.eigh(b)
    return vecs * np.sqrt(np.clip(vals, 0.0, None))


def glm_cluster_robust(X: np.ndarray, y: np.ndarray, mu: np.ndarray, dmu_deta: np.ndarray,
                       var: np.ndarray, groups: np.ndarray, type: str = "CR2",
                       bread: np.ndarray | None = None) -> ClusterRobust:
    """clubSandwich ``vcovCR`` (CR0/CR1/CR2) and Satterthwaite df for a GLM without weights.

    ``groups`` are integer cluster codes 0..J-1 (every code used). ``bread`` is the
    unscaled covariance the sandwich and the Satterthwaite df are built on; R takes
    ``summary(glm)$cov.unscaled``, i.e. the information at the working weights of the last
    IRLS iteration, while the CR2 adjustment uses the information at the final fitted
    values (``M`` below); the two differ by the IRLS tolerance, which for a non-canonical
    link (cloglog, Fisher scoring converges linearly) is visible at about 1e-7. Without
    ``bread``, ``M`` is used for both. See the module docstring for the formulas.
    """
    if type not in TYPES:
        raise ValueError(f"type must be one of {TYPES}, got {type!r}")
    X = np.asarray(X, float)
    n, p = X.shape
    Xd = dmu_deta[:, None] * X
    w = 1.0 / var
    M = np.linalg.pinv(Xd.T @ (w[:, None] * Xd), hermitian=True)
    M = (M + M.T) / 2
    B = M if bread is None else (np.asarray(bread, float) + np.asarray(bread, float).T) / 2
    L = _psd_factor(B)
    r = y - mu
    J = int(groups.max()) + 1
    sizes = np.bincount(groups, minlength=J)
    order = np.argsort(groups, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    comp = np.zeros((J, p))   # E_j r_j
    g = np.zeros((J, p))      # g_ij
    H = np.zeros((J, p, p))   # rows h_ij'
    for s in np.unique(sizes):
        cl = np.flatnonzero(sizes == s)
        rows = order[starts[cl][:, None] + np.arange(s)[None, :]]  # (k, s)
        Xb, vb, wb, rb = Xd[rows], var[rows], w[rows], r[rows]
        sq = np.sqrt(vb)
        if type == "CR2":
            Gj = -(sq[:, :, None] * np.einsum("ksa,ab,ktb->kst", Xb, M, Xb) * sq[:, None, :])
            Gj[:, np.arange(s), np.arange(s)] += vb ** 2
            A = sq[:, :, None] * _inv_sqrt_psd(Gj) * sq[:, None, :]
            E = np.einsum("ksp,ks,kst->kpt", Xb, wb, A)
        else:
            scale = np.sqrt(J / (J - 1)) if type == "CR1" else 1.0
            E = np.transpose(Xb * (wb * scale)[:, :, None], (0, 2, 1))
        comp[cl] = np.einsum("kpt,kt->kp", E, rb)
        ME = np.einsum("ab,kbt->kat", B, E)
        g[cl] = np.einsum("kpt,kt->kp", ME ** 2, vb)
        H[cl] = np.einsum("kpt,kta,ab->kpb", ME, Xb, L)
    cov = B @ (comp.T @ comp) @ B
    h2 = np.einsum("jia,jia->ji", H, H)
    K = np.einsum("jia,jib->iab", H, H)
    trace = g.sum(0) - h2.sum(0)
    frob2 = (g ** 2).sum(0) - 2 * (g * h2).sum(0) + np.einsum("iab,iab->i", K, K)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = trace ** 2 / frob2
    return ClusterRobust(cov=(cov + cov.T) / 2, df_satterthwaite=df, n_clusters=J)
