"""Score two candidate ads for one user's behaviour history (README: "CTR in a few lines").

    python -m infersuite.examples.ctr_score            # INFERSUITE_TARGET=host:port, default localhost:50051
TLS / token: see README "Auth, TLS and mutual TLS" (INFERSUITE_CLIENT_* variables).
"""

import asyncio
import os

from infersuite.clients import CtrClient, security_from_env


async def main() -> None:
    target = os.environ.get("INFERSUITE_TARGET", "localhost:50051")
    async with CtrClient(target, security=security_from_env()) as ctr:
        scores = await ctr.score(history_item_ids=[12, 40, 7], history_category_ids=[3, 5, 3],
                                 candidate_item_ids=[8, 99], candidate_category_ids=[3, 11], explain=True)
    print("click probabilities:", scores.click_probabilities.round(4).tolist())  # (2,)
    weights = scores.activation_weights  # asked for with explain=True: (2, 3), one per behaviour per candidate
    print("activation weights:", None if weights is None else weights.shape)
    print("model:", scores.model, scores.model_version)


if __name__ == "__main__":
    asyncio.run(main())
