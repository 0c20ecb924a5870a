"""Operations: ``manage.py doctor`` (:mod:`apiplatform.ops.doctor`). A composition point: it reads
every app (through their selectors) to tell an operator what is wrong with a deployment."""
