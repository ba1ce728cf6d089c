"""Course tooling: what builds, runs and hands out the course — never imported by a chapter's notebook.

    run      python -m pt_helpers.course.run      execute notebooks with papermill (typed -p parameters), timings
    site     python -m pt_helpers.course.site     the static HTML site and course map from the executed copies
    student  python -m pt_helpers.course.student  the learners' copy: solution cells replaced by stubs

These modules may import any chapter module of ``pt_helpers``; no chapter module imports them.
"""
