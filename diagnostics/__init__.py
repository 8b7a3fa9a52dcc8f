"""vlmdiag's nine diagnostics, one module per section of the paper. Installed as
``vlmdiag.diagnostics``; ``pytest --base X --rl Y`` collects them (see the README, "Which tests
run")."""
