#pragma once
// Saved activations per micro-batch. A layer keeps what its forward saves for its backward in
// one `Saved` struct and exchanges it with swap_saved(other): a pipeline with several
// micro-batches in flight holds one Saved per micro-batch and swaps it in around each forward
// and backward, so one layer object (and one set of weights) serves them all without copying.
//
// A layer's Saved also has a slot for each nested layer's Saved. Those slots are placeholders
// inside the layer itself (the nested layer holds its live state); swap_nested_saved moves the
// nested state along after the outer structs were swapped.
#include <utility>

namespace baleine::model {

// Call right after std::swap(own_saved, other): `own_slot` then holds the nested layer's
// incoming state and `other_slot` the placeholder. Afterwards the incoming state is live in
// `nested`, the outgoing one is in other_slot, and own_slot is the placeholder again.
template <class Layer, class NestedSaved>
void swap_nested_saved(Layer& nested, NestedSaved& own_slot, NestedSaved& other_slot) {
  nested.swap_saved(own_slot);
  std::swap(own_slot, other_slot);
}

}  // namespace baleine::model
