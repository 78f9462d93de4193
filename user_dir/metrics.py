"""Classification metrics shared by training (the criteria's validation lines) and the reports."""


def mcc_from_counts(tp: float, fp: float, fn: float, tn: float) -> float:
    """Matthews correlation x 100 from a binary confusion matrix (GLUE's CoLA metric); 0 when a
    row or column of the matrix is empty (one class predicted or present), as scikit-learn."""
    denom = ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)) ** 0.5
    return 100.0 * (tp * tn - fp * fn) / denom if denom else 0.0
