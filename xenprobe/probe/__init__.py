# SPDX-License-Identifier: GPL-2.0-only
"""What is read, against what reference, and the verdict."""
