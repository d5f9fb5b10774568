from seriesgate.cli import main

raise SystemExit(main())
