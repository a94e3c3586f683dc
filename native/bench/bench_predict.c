/*
 * The C baseline of `npm run bench:classifier`: scores the same rows with the same libxgboost calls
 * the addon makes (XGDMatrixCreateFromMat + XGBoosterPredict + XGDMatrixFree), with no Node in the
 * way, and prints microseconds per row for each batch size, one JSON object per line: wall-clock
 * time and the process's CPU time.
 *
 * usage: bench_predict MODEL FEATURES.f32 NUM_FEATURES NTHREAD MIN_SECONDS REPEATS BATCH...
 *   FEATURES.f32  little-endian float32 rows (NaN = missing), cycled to fill the batches
 *   NTHREAD       xgboost's nthread parameter; 0 keeps xgboost's default
 *   MIN_SECONDS   time spent per (batch size, repeat); REPEATS measurements per batch size
 *
 * With XGB_BENCH_SPLITS=1 it also times the other ways of splitting a batch into calls: one
 * XGBoosterPredictFromDense call (in-place prediction, no DMatrix) for the batch ("inplace"), and one
 * call per row, through a DMatrix ("dmatrix-rows") or in place ("inplace-rows"). These are the
 * figures behind the Classifier's choice of split (lib/classifier.ts, predictRowsAsync).
 */
#include <xgboost/c_api.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(call)                                                          \
  do {                                                                       \
    if ((call) != 0) {                                                       \
      fprintf(stderr, "bench_predict: %s failed: %s\n", #call, XGBGetLastError()); \
      exit(1);                                                               \
    }                                                                        \
  } while (0)

static double clock_seconds(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Wall-clock and process CPU time per row: CPU time (all threads) shows the cost of a call even
 * when other processes compete for the cores, where wall-clock time does not. */
typedef struct {
  double wall_us;
  double cpu_us;
} per_row;

/* Reads the whole float32 file; the row count is its size over 4 * num_features. */
static float *read_rows(const char *path, size_t num_features, size_t *num_rows) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    exit(1);
  }
  fseek(f, 0, SEEK_END);
  long bytes = ftell(f);
  fseek(f, 0, SEEK_SET);
  *num_rows = (size_t)bytes / (sizeof(float) * num_features);
  float *rows = malloc((size_t)bytes);
  if (!rows || fread(rows, 1, (size_t)bytes, f) != (size_t)bytes || *num_rows == 0) {
    fprintf(stderr, "bench_predict: cannot read %s\n", path);
    exit(1);
  }
  fclose(f);
  return rows;
}

/* One call of the addon's path: build a DMatrix over the rows, predict, free it. */
static float predict_dmatrix(BoosterHandle booster, const float *rows, size_t n, size_t cols) {
  DMatrixHandle m;
  bst_ulong len = 0;
  const float *out = NULL;
  CHECK(XGDMatrixCreateFromMat(rows, n, cols, NAN, &m));
  CHECK(XGBoosterPredict(booster, m, 0, 0, 0, &len, &out));
  float first = out[0];
  CHECK(XGDMatrixFree(m));
  return first;
}

static float predict_inplace(BoosterHandle booster, const float *rows, size_t n, size_t cols) {
  char array[256];
  const bst_ulong *shape = NULL;
  bst_ulong dim = 0;
  const float *out = NULL;
  snprintf(array, sizeof array,
           "{\"data\":[%llu,true],\"shape\":[%zu,%zu],\"typestr\":\"<f4\",\"version\":3}",
           (unsigned long long)(uintptr_t)rows, n, cols);
  CHECK(XGBoosterPredictFromDense(
      booster, array,
      "{\"type\":0,\"training\":false,\"iteration_begin\":0,\"iteration_end\":0,\"cache_id\":0,"
      "\"strict_shape\":false,\"missing\":NaN}",
      NULL, &shape, &dim, &out));
  return out[0];
}

/* The batch as n calls of one row each: the figures that say where one call for the batch wins. */
static float predict_dmatrix_rows(BoosterHandle booster, const float *rows, size_t n, size_t cols) {
  float first = 0;
  for (size_t i = 0; i < n; ++i) first += predict_dmatrix(booster, rows + i * cols, 1, cols);
  return first;
}

static float predict_inplace_rows(BoosterHandle booster, const float *rows, size_t n, size_t cols) {
  float first = 0;
  for (size_t i = 0; i < n; ++i) first += predict_inplace(booster, rows + i * cols, 1, cols);
  return first;
}

typedef float (*predict_fn)(BoosterHandle, const float *, size_t, size_t);

/* Times calls of `batch` rows for at least min_seconds. The rows of call i start at
 * (i * batch) mod (pool_rows - batch + 1), the scheme bench-classifier.ts uses. */
static per_row time_batches(predict_fn fn, BoosterHandle booster, const float *pool, size_t pool_rows,
                           size_t cols, size_t batch, double min_seconds, volatile float *sink) {
  const size_t span = pool_rows - batch + 1;
  for (size_t i = 0; i < 3; ++i) *sink += fn(booster, pool + ((i * batch) % span) * cols, batch, cols);
  size_t calls = 0;
  const double start = clock_seconds(CLOCK_MONOTONIC);
  const double cpu_start = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
  double elapsed = 0;
  do {
    for (size_t k = 0; k < 16; ++k, ++calls) {
      *sink += fn(booster, pool + ((calls * batch) % span) * cols, batch, cols);
    }
    elapsed = clock_seconds(CLOCK_MONOTONIC) - start;
  } while (elapsed < min_seconds);
  const double rows = (double)calls * (double)batch;
  per_row result = {elapsed * 1e6 / rows, (clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - cpu_start) * 1e6 / rows};
  return result;
}

int main(int argc, char **argv) {
  if (argc < 8) {
    fprintf(stderr,
            "usage: %s MODEL FEATURES.f32 NUM_FEATURES NTHREAD MIN_SECONDS REPEATS BATCH...\n",
            argv[0]);
    return 2;
  }
  const char *model = argv[1];
  const size_t cols = (size_t)strtoul(argv[3], NULL, 10);
  const int nthread = atoi(argv[4]);
  const double min_seconds = atof(argv[5]);
  const int repeats = atoi(argv[6]);
  const int splits = getenv("XGB_BENCH_SPLITS") && strcmp(getenv("XGB_BENCH_SPLITS"), "1") == 0;

  size_t rows_in_file = 0;
  float *rows = read_rows(argv[2], cols, &rows_in_file);
  size_t max_batch = 1;
  for (int a = 7; a < argc; ++a) {
    size_t b = (size_t)strtoul(argv[a], NULL, 10);
    if (b > max_batch) max_batch = b;
  }
  /* A pool of at least max_batch rows, the file's rows cycled. */
  const size_t pool_rows = rows_in_file > max_batch ? rows_in_file : max_batch;
  float *pool = malloc(pool_rows * cols * sizeof(float));
  for (size_t r = 0; r < pool_rows; ++r) {
    memcpy(pool + r * cols, rows + (r % rows_in_file) * cols, cols * sizeof(float));
  }

  BoosterHandle booster;
  CHECK(XGBoosterCreate(NULL, 0, &booster));
  CHECK(XGBoosterLoadModel(booster, model));
  if (nthread > 0) {
    char value[16];
    snprintf(value, sizeof value, "%d", nthread);
    CHECK(XGBoosterSetParam(booster, "nthread", value));
  }
  bst_ulong num_features = 0;
  CHECK(XGBoosterGetNumFeature(booster, &num_features));
  if ((size_t)num_features != cols) {
    fprintf(stderr, "bench_predict: model has %llu features, not %zu\n",
            (unsigned long long)num_features, cols);
    return 1;
  }

  volatile float sink = 0;
  for (int a = 7; a < argc; ++a) {
    const size_t batch = (size_t)strtoul(argv[a], NULL, 10);
    for (int r = 0; r < repeats; ++r) {
      static const struct {
        const char *name;
        predict_fn fn;
      } paths[] = {{"dmatrix", predict_dmatrix},
                   {"inplace", predict_inplace},
                   {"dmatrix-rows", predict_dmatrix_rows},
                   {"inplace-rows", predict_inplace_rows}};
      for (size_t p = 0; p < (splits ? 4u : 1u); ++p) {
        /* One row is the same call whichever way it is split. */
        if (batch == 1 && p >= 2) continue;
        per_row t = time_batches(paths[p].fn, booster, pool, pool_rows, cols, batch, min_seconds, &sink);
        printf("{\"path\":\"%s\",\"batch\":%zu,\"repeat\":%d,\"usPerRow\":%.4f,\"cpuUsPerRow\":%.4f}\n",
               paths[p].name, batch, r, t.wall_us, t.cpu_us);
      }
      fflush(stdout);
    }
  }
  CHECK(XGBoosterFree(booster));
  free(pool);
  free(rows);
  return sink == 12345.f ? 3 : 0; /* keeps the sink alive */
}
