"""
End-to-end tests: a real C{twistd}, real pip, uv, poetry and pdm, nginx, a
headless browser and systemd's tools against the fake index on 127.0.0.1;
and the checks of the whole tree (mypy).  Minutes.
"""
