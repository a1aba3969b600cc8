"""The projected tables' upkeep: filling them from the log (``rebuild``, through
``shadow`` schemas), checking them against it (``verify``), reporting on them
(``status``), and reading the log for all three (``source``).

These run the projections' mappings (``projections``) against the database; they
live here, not in ``projections``, so that the projections depend on the domain alone.
"""
