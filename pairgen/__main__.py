from pairgen.cli import main

raise SystemExit(main())
