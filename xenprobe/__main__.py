# SPDX-License-Identifier: GPL-2.0-only
from xenprobe.entry import main

raise SystemExit(main())
