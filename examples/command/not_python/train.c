/* The toy trainer of train.sh in C: a 1-D logistic regression fit by gradient descent on 200 generated
 * points (the same for every seed; the seed picks the initial weights). One line per epoch on stdout:
 *
 *   epoch 3 train_loss 0.412345 valid_loss 0.523456 valid_acc 0.880000
 *
 * Build: cc -O2 -o train train.c -lm
 * Usage: ./train [--lr 0.5] [--epochs 20] [--seed 0]          (--lr=0.5 works too)
 *
 * SIGUSR2 or SIGTERM stop it between epochs; it exits 128 + the signal number (140, 143), never 0.
 * The numbers differ from train.sh's (its own random generator), the format does not.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_TRAIN 150
#define N_VALID 50

static volatile sig_atomic_t stop_signal = 0;

static void on_signal(int signum) { stop_signal = signum; }

/* splitmix64: a small, portable generator, so every platform prints the same numbers. */
static uint64_t rng_state;
static double uniform(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0; /* [0, 1) */
}

static double sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }
static double nll(double p, double y) { return -(y * log(p + 1e-12) + (1 - y) * log(1 - p + 1e-12)); }

/* "--name value" or "--name=value": the value, else NULL. */
static const char *flag(int argc, char **argv, int *i, const char *name) {
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (argv[*i][n] != '\0') return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "train: %s needs a value\n", name);
        exit(2);
    }
    return argv[++*i];
}

int main(int argc, char **argv) {
    double lr = 0.5;
    long epochs = 20, seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = flag(argc, argv, &i, "--lr"))) lr = atof(v);
        else if ((v = flag(argc, argv, &i, "--epochs"))) epochs = atol(v);
        else if ((v = flag(argc, argv, &i, "--seed"))) seed = atol(v);
        else {
            fprintf(stderr, "train: unknown argument: %s\n", argv[i]);
            return 2;
        }
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* The data: x uniform in [-3, 3], label 1 when x + noise > 0.5. */
    double x[N_TRAIN + N_VALID], y[N_TRAIN + N_VALID];
    rng_state = 12345;
    for (int i = 0; i < N_TRAIN + N_VALID; i++) {
        x[i] = 6 * uniform() - 3;
        double noise = sqrt(-2 * log(1 - uniform())) * cos(6.283185307179586 * uniform());
        y[i] = x[i] + 0.8 * noise > 0.5;
    }

    rng_state = (uint64_t)seed;
    double w = 2 * uniform() - 1, b = 2 * uniform() - 1;
    struct timespec pause = {0, 50 * 1000 * 1000};
    for (long epoch = 1; epoch <= epochs && !stop_signal; epoch++) {
        double gw = 0, gb = 0, loss = 0, vloss = 0, correct = 0;
        for (int i = 0; i < N_TRAIN; i++) {
            double p = sigmoid(w * x[i] + b);
            loss += nll(p, y[i]);
            gw += (p - y[i]) * x[i];
            gb += p - y[i];
        }
        w -= lr * gw / N_TRAIN;
        b -= lr * gb / N_TRAIN;
        for (int i = N_TRAIN; i < N_TRAIN + N_VALID; i++) {
            double p = sigmoid(w * x[i] + b);
            vloss += nll(p, y[i]);
            correct += (p > 0.5) == (y[i] > 0.5);
        }
        printf("epoch %ld train_loss %.6f valid_loss %.6f valid_acc %.6f\n", epoch, loss / N_TRAIN,
               vloss / N_VALID, correct / N_VALID);
        fflush(stdout);
        nanosleep(&pause, NULL); /* a signal cuts it short; the loop condition then stops */
    }
    if (stop_signal) {
        fprintf(stderr, "train: signal %d: stopping\n", (int)stop_signal);
        return 128 + stop_signal;
    }
    return 0;
}
