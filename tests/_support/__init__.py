"""Helpers shared by the test modules (fixtures live in conftest.py).

processes   a Python snippet in a child process: run to completion, or watched line by line
textserver  a TCP server that answers with text, not Gearman
foreign     a foreign worker process (PHP, the gearman CLI...) registered with gearmand
gearmand    what gearmand reports (admin ``status`` / ``workers``) and polling for a condition
reliability figures, sizes and small thread helpers of the test_reliability_* modules
"""
