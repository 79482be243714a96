from xenprobe.entry import main

raise SystemExit(main())
