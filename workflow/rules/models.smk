# The model zoo: one rule per model entry turns it into a local diffusers folder
# (a toy denoiser trained on the toy world, or a manifest of an existing local folder).


rule model:
    input:
        lambda w: list(NODES[model_stage(w)].deps),
    output:
        directory(str(PATHS.model("{model}"))),
    params:
        study=STUDY_FILE,
        values=lambda w: NODES[model_stage(w)].param_values(PARAMS),
    threads: PARAMS["threads"]
    resources:
        gpu=0,
    conda:
        "../envs/diffscale.yaml"
    log:
        log_file("models", "{model}.log"),
    shell:
        "diffscale --params {params.study:q} model --name {wildcards.model:q} 2> {log:q}"
