"""Calibration diagnostics: pure functions of posterior samples and truths (numpy or torch in,
numpy out)."""

from .coverage import (
    binomial_band,
    coverage_curve,
    coverage_map,
    coverage_per_test,
    expected_coverage,
    single_test_band,
)
from .global_stats import band_edges, log_band_powers, log_total_power
from .lensing import EBPower, eb_maps, eb_noise_power, eb_power, residual_eb_power
from .moments import gaussian_w2, std_ratio, z_mean
from .sbc import (
    peak_counts,
    pixel_values,
    power_spectrum_bins,
    random_projections,
    rank_histogram,
    rank_shift,
    rank_uniformity_pvalue,
    sbc_ranks,
)
from .spectra import (
    azimuthal_average,
    cross_correlation,
    k_bin_edges,
    one_point_pdf,
    power_spectrum,
    sample_variance_band,
    transfer_function,
)
from .tarp import ecp_curve, tarp_fractions
from .zscores import reduced_chi2, zscore_map

__all__ = [
    "EBPower",
    "azimuthal_average",
    "band_edges",
    "binomial_band",
    "coverage_curve",
    "coverage_map",
    "coverage_per_test",
    "cross_correlation",
    "eb_maps",
    "eb_noise_power",
    "eb_power",
    "ecp_curve",
    "expected_coverage",
    "single_test_band",
    "gaussian_w2",
    "k_bin_edges",
    "log_band_powers",
    "log_total_power",
    "one_point_pdf",
    "peak_counts",
    "pixel_values",
    "power_spectrum",
    "power_spectrum_bins",
    "random_projections",
    "rank_histogram",
    "rank_shift",
    "rank_uniformity_pvalue",
    "reduced_chi2",
    "residual_eb_power",
    "sample_variance_band",
    "sbc_ranks",
    "std_ratio",
    "tarp_fractions",
    "transfer_function",
    "z_mean",
    "zscore_map",
]
