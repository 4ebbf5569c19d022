"""The main job (``centerpoint-deploy deploy``): export, verify, evaluate, benchmark, one report.

Import from the submodules: ``job.settings.load_settings`` / ``DeploySettings``,
``job.run.run_deploy_job``, ``job.result.JobResult``.
"""
