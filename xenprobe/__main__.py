from xenprobe.cli import main

raise SystemExit(main())
