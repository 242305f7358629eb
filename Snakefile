# diffscale: how diffusion models spend inference compute, as one DAG.
#   snakemake --cores all                                  the default study (params.yaml)
#   snakemake --cores all --configfile config/smoke.yaml   another study
#   snakemake --profile workflow/profiles/slurm ...        on a Slurm cluster
from snakemake.utils import min_version, validate

min_version("9.0")


# A study given with --configfile replaces params.yaml instead of being merged into it.
if not workflow.overwrite_configfiles:

    configfile: "params.yaml"



validate(config, "workflow/schemas/params.schema.json", set_default=False)


include: "workflow/rules/common.smk"
include: "workflow/rules/toyworld.smk"
include: "workflow/rules/evaldata.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/sampling.smk"
include: "workflow/rules/scoring.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        PATHS.report_dir,
