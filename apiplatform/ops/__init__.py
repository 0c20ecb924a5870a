"""Operations: ``manage.py doctor`` (:mod:`apiplatform.ops.doctor`) and the admin's operations console
(:mod:`apiplatform.ops.console`, pages under /admin/operations/). A composition point: it reads every
app (through their selectors) to tell an operator what is wrong with a deployment."""
