#!/usr/bin/env python3
"""Converts an XGBoost model in the legacy binary format (which libxgboost 3.1 and later cannot read)
to UBJSON or JSON, with xgboost 3.0, the last release that reads the binary format.

  npm run convert-model -- IN OUT       (OUT ends in .ubj, or .json)

Exits 0 after printing what it wrote, 2 with a message naming the problem otherwise.
"""
import os
import sys
import warnings

import xgboost as xgb


def fail(message):
    print('convert-model: %s' % message, file=sys.stderr)
    sys.exit(2)


def main(argv):
    if len(argv) != 2:
        fail('usage: npm run convert-model -- IN OUT   (IN: a model file; OUT: a path ending in .ubj or .json)')
    source, target = argv
    if not os.path.isfile(source):
        fail("cannot read '%s': no such file" % source)
    if os.path.splitext(target)[1] not in ('.ubj', '.json'):
        fail("'%s' must end in .ubj or .json, the formats current xgboost releases read" % target)
    if os.path.abspath(source) == os.path.abspath(target):
        fail('IN and OUT are the same file; write the converted model beside the original')
    with warnings.catch_warnings():
        # 3.0 warns that the binary format is deprecated: converting it is the point.
        warnings.simplefilter('ignore')
        try:
            booster = xgb.Booster(model_file=source)
        except xgb.core.XGBoostError as err:
            reason = str(err).strip().splitlines()[0]
            fail("cannot load '%s' as an XGBoost model with xgboost %s: %s" % (source, xgb.__version__, reason))
    out_dir = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(out_dir):
        fail("cannot write '%s': folder %s does not exist" % (target, out_dir))
    booster.save_model(target)
    print("convert-model: wrote %s (%s, %d trees, %d features) from %s, with xgboost %s"
          % (target, 'UBJSON' if target.endswith('.ubj') else 'JSON', booster.num_boosted_rounds(),
             booster.num_features(), source, xgb.__version__))


if __name__ == '__main__':
    main(sys.argv[1:])
