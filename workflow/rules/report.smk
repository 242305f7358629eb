# Aggregation and the report: the tidy metrics.csv, then figures, tables and the report page.


rule aggregate:
    input:
        node_inputs("aggregate"),
    output:
        report(PATHS.metrics, caption="../report/metrics.rst", category="Tables"),
    params:
        study=STUDY_FILE,
        values=node_params("aggregate"),
    conda:
        "../envs/diffscale.yaml"
    log:
        log_file("aggregate.log"),
    shell:
        "diffscale --params {params.study:q} aggregate 2> {log:q}"


rule render_report:
    input:
        node_inputs("report"),
    output:
        report(
            directory(PATHS.report_dir),
            htmlindex="index.html",
            caption="../report/report.rst",
            category="Report",
        ),
    params:
        study=STUDY_FILE,
        values=node_params("report"),
    conda:
        "../envs/diffscale.yaml"
    log:
        log_file("report.log"),
    shell:
        "diffscale --params {params.study:q} report 2> {log:q}"
