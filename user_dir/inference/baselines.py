"""The classifiers users pick instead of a distilled student, trained on gold labels.

``FastText`` (Joulin et al. 2017: bag of words and bigrams, a linear model
over their average; the ``fasttext`` library with the paper's sentiment
settings, 10 dimensions and bigrams, the learning rate from the paper's grid
and the epochs (5 as the paper, more for a corpus this small) picked on a
validation set) and ``TfidfLogReg`` (TF-IDF of
1-2-grams, scikit-learn's logistic regression, C chosen on the validation
set).  Both read text as every tool of the plugin does (``clean_text``), and
go from raw text to labels in ``predict``, as the students do in a report.
"""

import logging
import os
import re
import tempfile
from typing import List, Sequence

import numpy as np

from ..preprocess.text_io import clean_text

logger = logging.getLogger(__name__)

# fastText's own examples lower-case and split punctuation off before training
_PUNCT = re.compile(r"([.!?,;:'\"()/\\-])")


def fasttext_text(text: str) -> str:
    return " ".join(_PUNCT.sub(r" \1 ", clean_text(text).lower()).split())


class FastText:
    name = "fastText (bigrams)"

    def __init__(self, lrs: Sequence[float] = (0.05, 0.1, 0.25, 0.5), epochs: Sequence[int] = (5, 10, 25),
                 dim: int = 10, threads: int = 0, seed: int = 1):
        self.lrs, self.epochs, self.dim = lrs, epochs, dim
        self.threads, self.seed = threads or os.cpu_count(), seed

    def fit(self, texts: Sequence[str], labels: Sequence[str], valid_texts: Sequence[str],
            valid_labels: Sequence[str]) -> "FastText":
        import fasttext

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "train.txt")
            with open(path, "w", encoding="utf-8") as f:
                f.writelines(f"__label__{y} {fasttext_text(x)}\n" for x, y in zip(texts, labels))
            best = None
            for lr in self.lrs:
                for epoch in self.epochs:
                    try:
                        self.model = fasttext.train_supervised(input=path, lr=lr, dim=self.dim, epoch=epoch,
                                                               wordNgrams=2, thread=self.threads,
                                                               seed=self.seed, verbose=0)
                    except RuntimeError as e:
                        # fastText stops on NaN when a learning rate diverges (its threads race, so
                        # this can vary from run to run): that point of the grid is lost, not the search
                        if "NaN" not in str(e):
                            raise
                        logger.warning("fastText: lr=%s, %d epochs diverged (%s); skipped", lr, epoch, e)
                        continue
                    acc = float(np.mean(np.array(self.predict(valid_texts)) == np.asarray(valid_labels)))
                    if best is None or acc > best[0]:
                        best = (acc, (lr, epoch), self.model)
        if best is None:
            raise RuntimeError(f"fastText diverged at every learning rate of {tuple(self.lrs)} "
                               f"and epochs {tuple(self.epochs)}: try smaller learning rates")
        _, (lr, epoch), self.model = best
        self.settings = {"lr": lr, "epoch": epoch, "dim": self.dim, "wordNgrams": 2, "bucket": self.model.bucket}
        logger.info("fastText: lr=%s, %d epochs on valid", lr, epoch)
        return self

    def predict(self, texts: Sequence[str]) -> List[str]:
        labels, _ = self.model.predict([fasttext_text(t) for t in texts], k=1)
        return [y[0][len("__label__"):] for y in labels]

    @property
    def num_parameters(self) -> int:
        rows = self.model.get_input_matrix().shape[0]  # words + hashed n-gram buckets
        return int(rows * self.model.get_dimension() + self.model.get_output_matrix().size)


class TfidfLogReg:
    name = "TF-IDF 1-2-gram LR"

    def __init__(self, cs: Sequence[float] = (1.0, 3.0, 10.0, 30.0), min_df: int = 2):
        self.cs, self.min_df = cs, min_df

    def fit(self, texts, labels, valid_texts, valid_labels) -> "TfidfLogReg":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=self.min_df, sublinear_tf=True,
                                          preprocessor=lambda t: clean_text(t).lower())
        x, xv = self.vectorizer.fit_transform(texts), self.vectorizer.transform(valid_texts)
        best = None
        for c in self.cs:
            model = LogisticRegression(C=c, max_iter=2000).fit(x, labels)
            acc = float(np.mean(model.predict(xv) == np.asarray(valid_labels)))
            if best is None or acc > best[0]:
                best = (acc, c, model)
        _, self.c, self.model = best
        self.settings = {"C": self.c, "features": len(self.vectorizer.vocabulary_)}
        logger.info("TF-IDF LR: C=%s on valid, %d features", self.c, self.settings["features"])
        return self

    def predict(self, texts: Sequence[str]) -> List[str]:
        return [str(y) for y in self.model.predict(self.vectorizer.transform(texts))]

    @property
    def num_parameters(self) -> int:
        return int(self.model.coef_.size + self.model.intercept_.size + len(self.vectorizer.idf_))
