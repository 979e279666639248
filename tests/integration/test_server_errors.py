"""Every bad input gets its documented status and a message naming the field; a full queue gives
RESOURCE_EXHAUSTED; a deadline gives DEADLINE_EXCEEDED; a cancelled stream frees its slot while
other streams keep going."""
import threading
import time
import unittest

import grpc

import harness
from harness import pb


def expect_error(test, call, request, code, message_start, **kwargs):
    with test.assertRaises(grpc.RpcError) as ctx:
        result = call(request, timeout=30, **kwargs)
        if not isinstance(result, (pb.CompleteResponse, pb.TokenizeResponse,
                                   pb.DetokenizeResponse, pb.ModelInfo)):
            list(result)
    test.assertEqual(ctx.exception.code(), code, ctx.exception.details())
    test.assertTrue(ctx.exception.details().startswith(message_start),
                    "%r does not start with %r" % (ctx.exception.details(), message_start))


class BadInputTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = harness.Server("--max-prompt-tokens", "64", "--max-new-tokens-cap", "100",
                                    "--max-message-bytes", "64Ki")
        cls.client = cls.server.client

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def check(self, request, message_start):
        for call in (self.client.generate, self.client.complete):
            expect_error(self, call, request, grpc.StatusCode.INVALID_ARGUMENT, message_start)

    def test_bad_inputs(self):
        before = self.server.metric('deltaserve_requests_rejected_total{code="INVALID_ARGUMENT"}')
        R = pb.GenerateRequest
        cases = [
            (R(), "prompt: must not be empty"),
            (R(text=""), "prompt.text: must not be empty"),
            (R(token_ids=pb.TokenIds()), "prompt.token_ids: must not be empty"),
            (R(token_ids=pb.TokenIds(ids=[1, 258])), "prompt.token_ids.ids[1]: 258 is not a token id"),
            (R(token_ids=pb.TokenIds(ids=[-5])), "prompt.token_ids.ids[0]: -5 is not a token id"),
            (R(text="x" * 64), "prompt: 65 tokens exceed the server's limit of 64"),
            (R(text="hi", stopping=pb.StoppingParams(max_new_tokens=101)),
             "stopping.max_new_tokens: 101 exceeds the server's cap of 100"),
            (R(text="hi", stopping=pb.StoppingParams(max_new_tokens=-1)), "stopping.max_new_tokens:"),
            (R(text="hi", stopping=pb.StoppingParams(stop_token_ids=[300])),
             "stopping.stop_token_ids[0]: 300 is not a token id"),
            (R(text="hi", stopping=pb.StoppingParams(stop_strings=[""])),
             "stopping.stop_strings[0]: must not be empty"),
            (R(text="hi", sampling=pb.SamplingParams(temperature=-1)), "sampling.temperature:"),
            (R(text="hi", sampling=pb.SamplingParams(temperature=float("nan"))), "sampling.temperature:"),
            (R(text="hi", sampling=pb.SamplingParams(top_k=-1)), "sampling.top_k:"),
            (R(text="hi", sampling=pb.SamplingParams(top_p=0)), "sampling.top_p:"),
            (R(text="hi", sampling=pb.SamplingParams(top_p=1.01)), "sampling.top_p:"),
            (R(text="hi", sampling=pb.SamplingParams(min_p=1)), "sampling.min_p:"),
            (R(text="hi", sampling=pb.SamplingParams(repetition_penalty=0)),
             "sampling.repetition_penalty:"),
            (R(text="hi", sampling=pb.SamplingParams(presence_penalty=2.5)),
             "sampling.presence_penalty:"),
            (R(text="hi", sampling=pb.SamplingParams(frequency_penalty=-3)),
             "sampling.frequency_penalty:"),
            (R(text="hi", sampling=pb.SamplingParams(top_logprobs=21)), "sampling.top_logprobs:"),
            (R(text="hi", request_id="has space"), "request_id:"),
        ]
        for request, message in cases:
            with self.subTest(message=message):
                self.check(request, message)
        after = self.server.metric('deltaserve_requests_rejected_total{code="INVALID_ARGUMENT"}')
        self.assertEqual(after - before, 2 * len(cases))
        self.assertEqual(self.server.metric("deltaserve_prompt_tokens_total"), 0)

    def test_message_size_limit(self):
        with self.assertRaises(grpc.RpcError) as ctx:
            self.client.complete(pb.GenerateRequest(text="x" * (80 << 10)), timeout=30)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        # Just under the limit the message is accepted (and then refused for its length).
        expect_error(self, self.client.complete, pb.GenerateRequest(text="x" * (60 << 10)),
                     grpc.StatusCode.INVALID_ARGUMENT, "prompt: 61441 tokens exceed")

    def test_detokenize_unknown_id(self):
        expect_error(self, self.client.detokenize, pb.DetokenizeRequest(token_ids=[65, 9999]),
                     grpc.StatusCode.INVALID_ARGUMENT, "token_ids[1]: 9999 is not a token id")


class CapacityTest(unittest.TestCase):
    """One state slot and a waiting queue of one."""

    @classmethod
    def setUpClass(cls):
        cls.server = harness.Server("--queue-limit", "1", "--pool-slots", "1")
        cls.client = cls.server.client

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_full_queue_is_resource_exhausted_and_deadline_frees_the_slot(self):
        info = self.client.model_info(pb.GetModelInfoRequest(), timeout=10)
        self.assertEqual(info.pool_slots, 1)
        # A holds the slot (until its deadline), B waits, C finds the queue full.
        a = self.client.generate(harness.greedy_request("a", 4000), timeout=4)
        next(a)
        b = self.client.generate(harness.greedy_request("b", 4), timeout=60)
        harness.wait_until(lambda: self.server.metric("deltaserve_waiting_requests") == 1,
                           message="B waiting")
        expect_error(self, self.client.generate, harness.greedy_request("c", 4),
                     grpc.StatusCode.RESOURCE_EXHAUSTED, "")
        self.assertEqual(
            self.server.metric('deltaserve_requests_rejected_total{code="RESOURCE_EXHAUSTED"}'), 1)
        # A's deadline passes: DEADLINE_EXCEEDED, and B gets the slot and finishes.
        with self.assertRaises(grpc.RpcError) as ctx:
            list(a)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        b_ids = [t for m in b for t in m.token_ids]
        self.assertEqual(len(b_ids), 4)
        harness.wait_until(lambda: self.server.metric("deltaserve_state_pool_slots_used") == 0,
                           message="slot released")


class CancelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = harness.Server()
        cls.client = cls.server.client

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_cancel_frees_the_slot_while_others_continue(self):
        n = 400
        counts = [0, 0, 0]
        calls = [self.client.generate(harness.greedy_request("stream %d" % i, n), timeout=120)
                 for i in range(3)]
        results = [None, None, None]

        def read(i):
            try:
                for msg in calls[i]:
                    counts[i] += len(msg.token_ids)
                results[i] = "ok"
            except grpc.RpcError as e:
                results[i] = e.code()

        threads = [threading.Thread(target=read, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        harness.wait_until(lambda: min(counts) >= 5, timeout=60, message="all streams started")
        self.assertEqual(self.server.metric("deltaserve_state_pool_slots_used"), 3)
        calls[0].cancel()
        harness.wait_until(lambda: self.server.metric("deltaserve_state_pool_slots_used") == 2,
                           timeout=20, message="cancelled stream's slot freed")
        self.assertEqual(self.server.metric('deltaserve_requests_total{finish_reason="cancelled"}'), 1)
        progress = counts[1], counts[2]
        harness.wait_until(lambda: counts[1] > progress[0] and counts[2] > progress[1],
                           timeout=20, message="other streams still going")
        for t in threads:
            t.join(timeout=120)
        self.assertEqual(results[0], grpc.StatusCode.CANCELLED)
        self.assertEqual(results[1:], ["ok", "ok"])
        self.assertEqual(counts[1:], [n, n])
        self.assertLess(counts[0], n)
        harness.wait_until(lambda: self.server.metric("deltaserve_state_pool_slots_used") == 0,
                           message="all slots free")
        self.assertEqual(self.server.metric('deltaserve_requests_total{finish_reason="length"}'), 2)


if __name__ == "__main__":
    harness.main()
