from user_dir.cli.flags import components, help_text


def test_every_flag_has_help():
    kinds = {kind for kind, _, _ in components()}
    assert kinds == {"task", "model", "criterion", "optimizer"}
    missing = []
    for kind, names, dc in components():
        for name, f in dc.__dataclass_fields__.items():
            if name.startswith("_") or not f.init:
                continue
            default = str(f.default)
            if default.startswith("${"):  # interpolated from other groups, not a flag
                continue
            if not f.metadata.get("help"):
                missing.append(f"{names[0]}.{name}")
    assert not missing, f"flags without help: {missing}"
    text = help_text()
    for flag in ("--distillation-target", "--feature-dropout", "--embed-bag-mode", "--distillation-alpha",
                 "--distillation-loss", "--adam-betas", "--sparse-embedding", "--max-positions",
                 "--lstm-hidden-size", "--embed-init", "--pooling", "--head-layers"):
        assert flag in text
