# SPDX-License-Identifier: GPL-2.0-only
from xenprobe.cli.entry import main

raise SystemExit(main())
