"""Feature dropout and truncation for bags of n-gram features."""

import numpy as np
from fairseq.data import BaseWrapperDataset


class FeatureDropoutDataset(BaseWrapperDataset):
    """Drop each feature with probability ``p``, then keep the first ``max_positions``.

    The draw for example ``index`` in epoch ``epoch`` comes from
    ``default_rng((seed, epoch, index))``: a fresh draw every epoch, the same
    draw whatever the worker, batch order or restart.  Kept features stay in
    their order, so truncation keeps the beginning of the text.  Use ``p=0``
    for validation: truncation only.
    """

    def __init__(self, dataset, p: float, max_positions: int, seed: int):
        super().__init__(dataset)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"feature dropout must be in [0, 1), got {p}")
        self.p = p
        self.max_positions = max_positions
        self.seed = seed
        self.epoch = 1
        self._sizes = np.minimum(dataset.sizes, max_positions)

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        # data-loader workers must see each new epoch to draw new masks
        return self.p == 0 and self.dataset.can_reuse_epoch_itr_across_epochs

    def set_epoch(self, epoch):
        super().set_epoch(epoch)
        self.epoch = epoch

    def __getitem__(self, index):
        item = self.dataset[index]
        if self.p > 0 and len(item) > 0:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            keep = rng.random(len(item)) >= self.p
            item = item[keep]
        return item[: self.max_positions]

    @property
    def sizes(self):
        return self._sizes

    def num_tokens(self, index):
        return self._sizes[index]

    def size(self, index):
        return self._sizes[index]
