"""The checkout flow's commands, as strict pydantic models, and their parsing.

``fields`` (the field types and their rules), ``base`` (``Command``, what every command
carries, and its ``Fingerprint``), the commands by what they act on (``catalogue``:
organizations, users, content; ``purchases``; ``access``: access and playback),
``by_type`` (``COMMAND_TYPES``, ``AnyCommand``) and ``parsing`` (``parse_command``,
``validate_command``). Beside them: ``currencies``, ``results`` (the answers) and
``demo`` (the demo history, as commands).
"""
