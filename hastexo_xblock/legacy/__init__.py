"""Compatibility with the original hastexo XBlock (8.x; renamed stackamole 9.x).

Everything an operator of the original brings along when switching lives
here, apart from the block's own fields: their ``XBLOCK_SETTINGS``
(``settings.py``), learners' state and grades (``state.py``), and the labs
the original was running (``tables.py`` reads its tables, ``adopt.py``
makes this project's rows for them; ``manage.py hastexo_adopt_legacy``).
The formats were learned from the original's documentation and schema;
nothing here imports or needs the original package.
"""
