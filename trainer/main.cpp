#include <cstdio>
int main() { std::puts("baleine (skeleton)"); return 0; }
