"""Rate-quality benchmark: ``python -m benchmarks.rd CLIPS_DIR --out DIR`` (see progvc.bench.rd)."""

if __name__ == "__main__":
    from progvc.bench.rd import main

    raise SystemExit(main())
