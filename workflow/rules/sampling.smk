# Sampling: one job per block (model x sampler x prompt set x search and verifier) loads the model once
# and writes, for each of the block's cells, its images, per-image records and cost ledger (atomically).


rule sample:
    input:
        lambda w: list(sample_node(w).deps),
    output:
        directory(str(PATHS.block_samples("{block}"))),
    params:
        study=STUDY_FILE,
        values=lambda w: sample_node(w).param_values(PARAMS),
    threads: PARAMS["threads"]
    resources:
        gpu=GPUS,
        mem_mb=4000,
        runtime=lambda w: sample_minutes().get(w.block, 60),
    conda:
        "../envs/diffscale.yaml"
    log:
        log_file("sample", "{block}.log"),
    benchmark:
        str(PATHS.root / "benchmarks" / "sample" / "{block}.tsv")
    shell:
        "diffscale --params {params.study:q} sample --block {wildcards.block:q} 2> {log:q}"
