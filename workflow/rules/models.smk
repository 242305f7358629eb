# The model zoo: one rule per model entry turns it into a local diffusers folder
# (a toy denoiser trained on the toy world, or a manifest of an existing local folder).


def model_stage(wildcards):
    return next(s for s in NODES if s.endswith("@" + wildcards.model) and "model@" in s)


rule model:
    input:
        lambda w: list(NODES[model_stage(w)].deps),
    output:
        directory(str(PATHS.model("{model}"))),
    params:
        values=lambda w: NODES[model_stage(w)].param_values(PARAMS),
    threads: PARAMS["threads"]
    resources:
        gpu=0,
    log:
        log_file("models", "{model}.log"),
    shell:
        "diffscale --params {STUDY_FILE:q} model --name {wildcards.model:q} 2> {log:q}"
