//! The typed client for the two contracts, written once over any [`Chain`]: deploy,
//! the Arena escrow operations, the ProofOfLearning registry and proof checks. Amounts
//! are `u128` in the fee asset's smallest unit (wei for ETH), ids are `u64`, matching
//! the storage layer. The Arena holds either ETH (`Arena`) or one ERC-20 token
//! (`TokenArena`); both run the same escrow rules, and only deposits and the contract's
//! holdings differ, which this client hides.

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::sol_types::{SolCall, SolConstructor, SolEvent};
use serde::{Deserialize, Serialize};

use crate::backend::{Chain, TxReceipt, TxRequest};
use crate::bindings::{Arena, ProofOfLearning, TestToken, TokenArena};
use crate::error::{ChainError, Result};
use crate::rules::DEFAULT_RECLAIM_AFTER_SECS;

/// Where the two contracts live, and what the Arena holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// The Arena escrow contract.
    pub arena: Address,
    /// The ProofOfLearning registry.
    pub proof_of_learning: Address,
    /// The Arena's fee token (a `TokenArena`), or `None` for ETH (an `Arena`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_token: Option<Address>,
}

/// What entry fees, balances and payouts are paid in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeeAsset {
    /// ETH, in wei (the `Arena` contract).
    Eth,
    /// One ERC-20 token at this address, in its smallest unit (the `TokenArena`
    /// contract).
    Token(Address),
}

impl FeeAsset {
    /// The token's address, if it is one.
    pub(crate) fn token(self) -> Option<Address> {
        match self {
            FeeAsset::Eth => None,
            FeeAsset::Token(token) => Some(token),
        }
    }
}

/// How amounts of the fee asset are written for people: `decimals` digits after the
/// point, then the symbol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeUnit {
    /// `ETH`, or the token's `symbol()`.
    pub symbol: String,
    /// 18 for ETH, or the token's `decimals()`.
    pub decimals: u8,
}

impl FeeUnit {
    /// ETH: 18 decimals.
    pub fn eth() -> Self {
        Self {
            symbol: "ETH".into(),
            decimals: 18,
        }
    }
}

/// The test token this client deploys on dev chains (`chain.fee_token = "test"`).
pub(crate) const TEST_TOKEN_NAME: &str = "Arena Test Dollar";
/// The symbol of the test token this client deploys on dev chains.
pub const TEST_TOKEN_SYMBOL: &str = "TUSD";

/// The life cycle of a match escrow, as the contract stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchStatus {
    /// No fee was ever locked for this match id.
    None,
    /// Fees are locked; the match can be settled or refunded.
    Open,
    /// Paid out; closed.
    Settled,
    /// Every fee returned; closed.
    Refunded,
}

/// A match's escrow: what it still holds, its status, and the terms it opened under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escrow {
    /// Wei still held (zero once settled or refunded).
    pub held: u128,
    /// The status.
    pub status: MatchStatus,
    /// When its first fee was locked (block timestamp, seconds; 0 if never).
    pub opened_at: u64,
    /// The Space it was opened for.
    pub space_id: u32,
    /// The rake it settles with, in basis points (its Space's at opening).
    pub rake_bps: u16,
}

/// Who runs a new Arena contract, and its entrants' safety net.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArenaTerms {
    /// The account that locks, settles, refunds and anchors.
    pub operator: Address,
    /// Where rakes go.
    pub treasury: Address,
    /// Seconds after a match's first lock from which its entrants may reclaim the fees.
    pub reclaim_after_secs: u64,
}

impl ArenaTerms {
    /// `operator` operates and is the treasury; the default reclaim delay.
    pub fn operated_by(operator: Address) -> Self {
        Self {
            operator,
            treasury: operator,
            reclaim_after_secs: DEFAULT_RECLAIM_AFTER_SECS,
        }
    }
}

/// A Space's terms as the Arena admin declared them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceTerms {
    /// Whether the admin declared the Space at all (no fee can be locked otherwise).
    pub declared: bool,
    /// Its rake, in basis points.
    pub rake_bps: u16,
}

/// One payout of a settlement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    /// Who is credited.
    pub payee: Address,
    /// How much, in wei.
    pub amount: u128,
}

/// The fields of a new proof-of-learning record (the trainer is the sender).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRecord {
    /// The agent whose adapter changed.
    pub agent_id: u64,
    /// Hash of the adapter trained from (zero for the first version).
    pub parent_adapter_hash: B256,
    /// Hash of the new adapter.
    pub new_adapter_hash: B256,
    /// Merkle root of the preference pairs used, in order.
    pub pairs_root: B256,
    /// Merkle root of the match results those pairs came from.
    pub results_root: B256,
    /// Hash of the training hyperparameters.
    pub hyperparams_hash: B256,
}

/// A stored proof-of-learning record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearningRecord {
    /// The record id (its index in the registry).
    pub id: u64,
    /// The fields as recorded.
    pub fields: NewRecord,
    /// The account that recorded it.
    pub trainer: Address,
    /// The block it was recorded in.
    pub block_number: u64,
}

/// Which root of a record a proof is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordRoot {
    /// The preference pairs root.
    Pairs,
    /// The match results root.
    Results,
}

/// The decoded events of type `E` in `receipt`, in order.
pub fn events<E: SolEvent>(receipt: &TxReceipt) -> Vec<E> {
    receipt
        .logs
        .iter()
        .filter_map(|log| E::decode_log(log).ok().map(|decoded| decoded.data))
        .collect()
}

/// The decoded events of type `E` that `emitter` logged in `receipt`, in order (an
/// event of the same signature from another contract in the same transaction is not
/// counted).
pub fn events_from<E: SolEvent>(receipt: &TxReceipt, emitter: Address) -> Vec<E> {
    receipt
        .logs
        .iter()
        .filter(|log| log.address == emitter)
        .filter_map(|log| E::decode_log(log).ok().map(|decoded| decoded.data))
        .collect()
}

/// Both contracts on one chain.
#[derive(Debug)]
pub struct Contracts<C> {
    chain: C,
    deployment: Deployment,
}

impl<C: Chain> Contracts<C> {
    /// Deploys both contracts from `deployer` (who becomes the admin of both) with
    /// `operator` as the Arena operator, its treasury and the registry's first trainer.
    pub async fn deploy(chain: C, deployer: Address, operator: Address) -> Result<Self> {
        Self::deploy_with(chain, deployer, ArenaTerms::operated_by(operator)).await
    }

    /// Deploys both contracts from `deployer` (who becomes the admin of both) on
    /// `terms`, with fees in ETH; the operator is also the registry's first trainer.
    pub async fn deploy_with(chain: C, deployer: Address, terms: ArenaTerms) -> Result<Self> {
        Self::deploy_for(chain, deployer, terms, FeeAsset::Eth).await
    }

    /// Deploys both contracts from `deployer` (who becomes the admin of both) on
    /// `terms`, with fees in `asset` (an `Arena` for ETH, a `TokenArena` for a token);
    /// the operator is also the registry's first trainer.
    pub async fn deploy_for(
        chain: C,
        deployer: Address,
        terms: ArenaTerms,
        asset: FeeAsset,
    ) -> Result<Self> {
        let operator = terms.operator;
        let arena_init = match asset {
            FeeAsset::Eth => [
                Arena::BYTECODE.as_ref(),
                Arena::constructorCall {
                    initialOperator: operator,
                    initialTreasury: terms.treasury,
                    reclaimAfterSeconds: terms.reclaim_after_secs,
                }
                .abi_encode()
                .as_slice(),
            ]
            .concat(),
            FeeAsset::Token(token) => [
                TokenArena::BYTECODE.as_ref(),
                TokenArena::constructorCall {
                    initialOperator: operator,
                    initialTreasury: terms.treasury,
                    reclaimAfterSeconds: terms.reclaim_after_secs,
                    feeAsset: token,
                }
                .abi_encode()
                .as_slice(),
            ]
            .concat(),
        };
        let arena = create(&chain, deployer, arena_init.into()).await?;
        // The registry lets only registered trainers write; the operator is the first.
        let pol_init = [
            ProofOfLearning::BYTECODE.as_ref(),
            ProofOfLearning::constructorCall {
                initialTrainer: operator,
            }
            .abi_encode()
            .as_slice(),
        ]
        .concat();
        let proof_of_learning = create(&chain, deployer, pol_init.into()).await?;
        Ok(Self {
            chain,
            deployment: Deployment {
                arena,
                proof_of_learning,
                fee_token: asset.token(),
            },
        })
    }

    /// Deploys a [`TestToken`] (named `TEST_TOKEN_NAME`, symbol
    /// [`TEST_TOKEN_SYMBOL`]) with `decimals` from `deployer`, its only minter, and
    /// mints `amount` to each of `holders`. For dev chains and tests.
    pub async fn deploy_test_token(
        chain: &C,
        deployer: Address,
        decimals: u8,
        holders: &[Address],
        amount: u128,
    ) -> Result<Address> {
        let init = [
            TestToken::BYTECODE.as_ref(),
            TestToken::constructorCall {
                tokenName: TEST_TOKEN_NAME.into(),
                tokenSymbol: TEST_TOKEN_SYMBOL.into(),
                tokenDecimals: decimals,
            }
            .abi_encode()
            .as_slice(),
        ]
        .concat();
        let token = create(chain, deployer, init.into()).await?;
        for holder in holders {
            let call = TestToken::mintCall {
                to: *holder,
                amount: U256::from(amount),
            };
            send_to(chain, deployer, token, call, U256::ZERO).await?;
        }
        Ok(token)
    }

    /// Uses an Arena and registry already deployed at those addresses, asking the
    /// Arena what it holds (an Arena from before fee tokens has no `feeToken` and
    /// holds ETH).
    pub async fn discover(chain: C, arena: Address, proof_of_learning: Address) -> Result<Self> {
        let fee_token = match view(&chain, arena, Arena::feeTokenCall {}).await {
            Ok(token) if token == Address::ZERO => None,
            Ok(token) => Some(token),
            Err(ChainError::Reverted(_)) => None,
            Err(e) => return Err(e),
        };
        Ok(Self::at(
            chain,
            Deployment {
                arena,
                proof_of_learning,
                fee_token,
            },
        ))
    }

    /// Uses contracts already deployed at `deployment`.
    pub fn at(chain: C, deployment: Deployment) -> Self {
        Self { chain, deployment }
    }

    /// The chain underneath.
    pub fn chain(&self) -> &C {
        &self.chain
    }

    /// The contract addresses.
    pub fn deployment(&self) -> Deployment {
        self.deployment
    }

    async fn arena_call<T: SolCall>(&self, call: T) -> Result<T::Return> {
        view(&self.chain, self.deployment.arena, call).await
    }

    async fn pol_call<T: SolCall>(&self, call: T) -> Result<T::Return> {
        view(&self.chain, self.deployment.proof_of_learning, call).await
    }

    async fn arena_send<T: SolCall>(
        &self,
        from: Address,
        call: T,
        value: U256,
    ) -> Result<TxReceipt> {
        send_to(&self.chain, from, self.deployment.arena, call, value).await
    }

    /// What the Arena holds.
    pub fn fee_asset(&self) -> FeeAsset {
        self.deployment
            .fee_token
            .map_or(FeeAsset::Eth, FeeAsset::Token)
    }

    /// How amounts of the fee asset are written: ETH, or the token's symbol and
    /// decimals as the token reports them.
    pub async fn fee_unit(&self) -> Result<FeeUnit> {
        match self.fee_asset() {
            FeeAsset::Eth => Ok(FeeUnit::eth()),
            FeeAsset::Token(token) => Ok(FeeUnit {
                symbol: view(&self.chain, token, TestToken::symbolCall {}).await?,
                decimals: view(&self.chain, token, TestToken::decimalsCall {}).await?,
            }),
        }
    }

    /// `from` deposits `amount` into their own balance: with the ETH sent along, or
    /// (for a fee token) by calling the token Arena's `deposit(amount)`, after
    /// approving the Arena for an unlimited amount if its allowance is short (one
    /// approval, so that deposits in flight together from one account do not overwrite
    /// each other's allowance). This signs for `from`, so it serves accounts this
    /// process holds keys for (dev wallets, tests); a user's own wallet approves the
    /// exact amount itself. The receipt is the deposit's.
    pub async fn deposit(&self, from: Address, amount: u128) -> Result<TxReceipt> {
        match self.fee_asset() {
            FeeAsset::Eth => {
                self.arena_send(from, Arena::depositCall {}, U256::from(amount))
                    .await
            }
            FeeAsset::Token(token) => {
                let allowed = view(
                    &self.chain,
                    token,
                    TestToken::allowanceCall {
                        _0: from,
                        _1: self.deployment.arena,
                    },
                )
                .await?;
                if allowed < U256::from(amount) {
                    // Some tokens (USDT) refuse to change one non-zero allowance to
                    // another: back to zero first.
                    if allowed != U256::ZERO {
                        self.approve(from, token, 0).await?;
                    }
                    let call = TestToken::approveCall {
                        spender: self.deployment.arena,
                        amount: U256::MAX,
                    };
                    send_to(&self.chain, from, token, call, U256::ZERO).await?;
                }
                let call = TokenArena::depositCall {
                    amount: U256::from(amount),
                };
                self.arena_send(from, call, U256::ZERO).await
            }
        }
    }

    /// `owner` allows the Arena to take `amount` of `token`.
    pub async fn approve(&self, owner: Address, token: Address, amount: u128) -> Result<TxReceipt> {
        let call = TestToken::approveCall {
            spender: self.deployment.arena,
            amount: U256::from(amount),
        };
        send_to(&self.chain, owner, token, call, U256::ZERO).await
    }

    /// What `account` holds of the fee asset in its own wallet, outside the Arena.
    pub async fn wallet_funds(&self, account: Address) -> Result<u128> {
        match self.fee_asset() {
            FeeAsset::Eth => to_u128(self.chain.balance(account).await?),
            FeeAsset::Token(token) => {
                to_u128(view(&self.chain, token, TestToken::balanceOfCall(account)).await?)
            }
        }
    }

    /// `from` withdraws `amount` wei of their own balance.
    pub async fn withdraw(&self, from: Address, amount: u128) -> Result<TxReceipt> {
        self.arena_send(
            from,
            Arena::withdrawCall {
                amount: U256::from(amount),
            },
            U256::ZERO,
        )
        .await
    }

    /// The operator locks `fee` wei of `user`'s balance into match `match_id` of Space
    /// `space_id` (the first lock opens the match under the Space's declared rake).
    pub async fn lock_fee(
        &self,
        operator: Address,
        match_id: u64,
        space_id: u64,
        user: Address,
        fee: u128,
    ) -> Result<TxReceipt> {
        let call = Arena::lockFeeCall {
            matchId: U256::from(match_id),
            spaceId: U256::from(space_id),
            user,
            fee: U256::from(fee),
        };
        self.arena_send(operator, call, U256::ZERO).await
    }

    /// The operator settles match `match_id`: `payouts` credited, the rest of the pot
    /// to the contract's treasury, `result_root` stored. The payees must be the match's
    /// entrants in lock order ([`Contracts::entries`]), and the amounts must add up to
    /// the pot minus the rake, less at most one wei of rounding per entrant.
    pub async fn settle(
        &self,
        operator: Address,
        match_id: u64,
        payouts: &[Payout],
        result_root: B256,
    ) -> Result<TxReceipt> {
        let call = Arena::settleCall {
            matchId: U256::from(match_id),
            payees: payouts.iter().map(|p| p.payee).collect(),
            amounts: payouts.iter().map(|p| U256::from(p.amount)).collect(),
            resultRoot: result_root,
        };
        self.arena_send(operator, call, U256::ZERO).await
    }

    /// The operator refunds every fee locked in match `match_id`.
    pub async fn refund(&self, operator: Address, match_id: u64) -> Result<TxReceipt> {
        self.arena_send(
            operator,
            Arena::refundCall {
                matchId: U256::from(match_id),
            },
            U256::ZERO,
        )
        .await
    }

    /// An entrant of match `match_id` returns every fee locked in it, once the reclaim
    /// delay has passed without a settlement or refund.
    pub async fn reclaim(&self, entrant: Address, match_id: u64) -> Result<TxReceipt> {
        self.arena_send(
            entrant,
            Arena::reclaimCall {
                matchId: U256::from(match_id),
            },
            U256::ZERO,
        )
        .await
    }

    /// The operator stores the result root of a match that held no fees.
    pub async fn anchor_result(
        &self,
        operator: Address,
        match_id: u64,
        result_root: B256,
    ) -> Result<TxReceipt> {
        let call = Arena::anchorResultCall {
            matchId: U256::from(match_id),
            resultRoot: result_root,
        };
        self.arena_send(operator, call, U256::ZERO).await
    }

    /// The admin declares Space `space_id`'s rake.
    pub async fn declare_space(
        &self,
        admin: Address,
        space_id: u64,
        rake_bps: u16,
    ) -> Result<TxReceipt> {
        let call = Arena::declareSpaceCall {
            spaceId: U256::from(space_id),
            rakeBps: U256::from(rake_bps),
        };
        self.arena_send(admin, call, U256::ZERO).await
    }

    /// The admin stops (`true`) or resumes (`false`) the locking of fees.
    pub async fn set_paused(&self, admin: Address, paused: bool) -> Result<TxReceipt> {
        self.arena_send(admin, Arena::setPausedCall { value: paused }, U256::ZERO)
            .await
    }

    /// The admin makes `treasury` the treasury.
    pub async fn set_treasury(&self, admin: Address, treasury: Address) -> Result<TxReceipt> {
        let call = Arena::setTreasuryCall {
            newTreasury: treasury,
        };
        self.arena_send(admin, call, U256::ZERO).await
    }

    /// The admin hands the admin role to `new_admin`.
    pub async fn set_admin(&self, admin: Address, new_admin: Address) -> Result<TxReceipt> {
        let call = Arena::setAdminCall {
            newAdmin: new_admin,
        };
        self.arena_send(admin, call, U256::ZERO).await
    }

    /// The admin makes `new_operator` the operator.
    pub async fn set_operator(&self, admin: Address, new_operator: Address) -> Result<TxReceipt> {
        self.arena_send(
            admin,
            Arena::setOperatorCall {
                newOperator: new_operator,
            },
            U256::ZERO,
        )
        .await
    }

    /// `user`'s withdrawable balance in the Arena, in wei.
    pub async fn balance_of(&self, user: Address) -> Result<u128> {
        to_u128(self.arena_call(Arena::balanceOfCall(user)).await?)
    }

    /// The escrow of match `match_id`.
    pub async fn escrow(&self, match_id: u64) -> Result<Escrow> {
        let r = self
            .arena_call(Arena::escrowOfCall(U256::from(match_id)))
            .await?;
        let status = match r.status {
            0 => MatchStatus::None,
            1 => MatchStatus::Open,
            2 => MatchStatus::Settled,
            3 => MatchStatus::Refunded,
            other => return Err(ChainError::Decode(format!("unknown match status {other}"))),
        };
        Ok(Escrow {
            held: r.held,
            status,
            opened_at: r.openedAt,
            space_id: r.spaceId,
            rake_bps: r.rakeBps,
        })
    }

    /// The entrants of match `match_id` and their fees, in the order they were locked.
    pub async fn entries(&self, match_id: u64) -> Result<Vec<Payout>> {
        let id = U256::from(match_id);
        let count = to_u64(
            self.arena_call(Arena::entryCountCall { matchId: id })
                .await?,
        )?;
        let mut out = Vec::with_capacity(count as usize);
        for index in 0..count {
            let r = self
                .arena_call(Arena::entryAtCall {
                    matchId: id,
                    index: U256::from(index),
                })
                .await?;
            out.push(Payout {
                payee: r.user,
                amount: to_u128(r.fee)?,
            });
        }
        Ok(out)
    }

    /// Space `space_id`'s terms as declared on chain.
    pub async fn space_terms(&self, space_id: u64) -> Result<SpaceTerms> {
        let r = self
            .arena_call(Arena::spaceTermsCall(U256::from(space_id)))
            .await?;
        Ok(SpaceTerms {
            declared: r.declared,
            rake_bps: r.rakeBps,
        })
    }

    /// The Arena contract's rules version (`Arena.VERSION`); a contract from before
    /// versions existed answers with an error.
    pub async fn arena_version(&self) -> Result<u64> {
        to_u64(self.arena_call(Arena::VERSIONCall {}).await?)
    }

    /// Where rakes go.
    pub async fn treasury(&self) -> Result<Address> {
        self.arena_call(Arena::treasuryCall {}).await
    }

    /// Whether the locking of fees is paused.
    pub async fn paused(&self) -> Result<bool> {
        self.arena_call(Arena::pausedCall {}).await
    }

    /// Seconds after a match's first lock from which its entrants may reclaim.
    pub async fn reclaim_after_secs(&self) -> Result<u64> {
        self.arena_call(Arena::reclaimAfterCall {}).await
    }

    /// The result root stored when match `match_id` was settled (zero before).
    pub async fn result_root(&self, match_id: u64) -> Result<B256> {
        self.arena_call(Arena::resultRootOfCall(U256::from(match_id)))
            .await
    }

    /// The Arena operator.
    pub async fn operator(&self) -> Result<Address> {
        self.arena_call(Arena::operatorCall {}).await
    }

    /// The Arena admin.
    pub async fn admin(&self) -> Result<Address> {
        self.arena_call(Arena::adminCall {}).await
    }

    /// What the Arena contract holds of the fee asset: its ETH, or its balance of the
    /// fee token. Solvency means this equals every balance plus every open escrow.
    pub async fn arena_funds(&self) -> Result<u128> {
        self.wallet_funds(self.deployment.arena).await
    }

    /// The registry's admin allows (`allowed`) or stops `trainer` writing records.
    pub async fn set_trainer(
        &self,
        admin: Address,
        trainer: Address,
        allowed: bool,
    ) -> Result<TxReceipt> {
        let call = ProofOfLearning::setTrainerCall { trainer, allowed };
        let tx = TxRequest {
            from: admin,
            to: Some(self.deployment.proof_of_learning),
            data: call.abi_encode().into(),
            value: U256::ZERO,
        };
        self.chain.send(tx).await
    }

    /// Whether `account` may write proof-of-learning records.
    pub async fn is_trainer(&self, account: Address) -> Result<bool> {
        self.pol_call(ProofOfLearning::isTrainerCall(account)).await
    }

    /// `trainer` appends a proof-of-learning record; returns its id and the receipt.
    /// Only a registered trainer may (the operator, and whoever the admin adds).
    pub async fn record(&self, trainer: Address, record: &NewRecord) -> Result<(u64, TxReceipt)> {
        let call = ProofOfLearning::recordCall {
            agentId: record.agent_id,
            parentAdapterHash: record.parent_adapter_hash,
            newAdapterHash: record.new_adapter_hash,
            pairsRoot: record.pairs_root,
            resultsRoot: record.results_root,
            hyperparamsHash: record.hyperparams_hash,
        };
        let tx = TxRequest {
            from: trainer,
            to: Some(self.deployment.proof_of_learning),
            data: call.abi_encode().into(),
            value: U256::ZERO,
        };
        let receipt = self.chain.send(tx).await?;
        let id = events::<ProofOfLearning::Recorded>(&receipt)
            .first()
            .map(|e| to_u64(e.id))
            .ok_or_else(|| ChainError::Decode("record receipt has no Recorded event".into()))??;
        Ok((id, receipt))
    }

    /// How many records exist.
    pub async fn record_count(&self) -> Result<u64> {
        to_u64(self.pol_call(ProofOfLearning::recordCountCall {}).await?)
    }

    /// The record with id `id`.
    pub async fn get_record(&self, id: u64) -> Result<LearningRecord> {
        let r = self
            .pol_call(ProofOfLearning::getRecordCall { id: U256::from(id) })
            .await?;
        Ok(LearningRecord {
            id,
            fields: NewRecord {
                agent_id: r.agentId,
                parent_adapter_hash: r.parentAdapterHash,
                new_adapter_hash: r.newAdapterHash,
                pairs_root: r.pairsRoot,
                results_root: r.resultsRoot,
                hyperparams_hash: r.hyperparamsHash,
            },
            trainer: r.trainer,
            block_number: r.blockNumber,
        })
    }

    /// How many records exist for `agent_id`.
    pub async fn agent_record_count(&self, agent_id: u64) -> Result<u64> {
        to_u64(
            self.pol_call(ProofOfLearning::agentRecordCountCall { agentId: agent_id })
                .await?,
        )
    }

    /// Every record of `agent_id`, oldest first.
    pub async fn agent_records(&self, agent_id: u64) -> Result<Vec<LearningRecord>> {
        let count = self.agent_record_count(agent_id).await?;
        let mut out = Vec::with_capacity(count as usize);
        for index in 0..count {
            let call = ProofOfLearning::agentRecordAtCall {
                agentId: agent_id,
                index: U256::from(index),
            };
            let id = to_u64(self.pol_call(call).await?)?;
            out.push(self.get_record(id).await?);
        }
        Ok(out)
    }

    /// Asks the contract whether `proof` links `leaf` to `root`.
    pub async fn verify_proof(&self, proof: &[B256], root: B256, leaf: B256) -> Result<bool> {
        self.pol_call(ProofOfLearning::verifyProofCall {
            proof: proof.to_vec(),
            root,
            leaf,
        })
        .await
    }

    /// Asks the contract whether `leaf` is under the chosen root of record `id`.
    pub async fn verify_in_record(
        &self,
        id: u64,
        which: RecordRoot,
        proof: &[B256],
        leaf: B256,
    ) -> Result<bool> {
        let call = ProofOfLearning::verifyInRecordCall {
            id: U256::from(id),
            inResults: which == RecordRoot::Results,
            proof: proof.to_vec(),
            leaf,
        };
        self.pol_call(call).await
    }
}

async fn send_to<C: Chain, T: SolCall>(
    chain: &C,
    from: Address,
    to: Address,
    call: T,
    value: U256,
) -> Result<TxReceipt> {
    let tx = TxRequest {
        from,
        to: Some(to),
        data: call.abi_encode().into(),
        value,
    };
    chain.send(tx).await
}

async fn create<C: Chain>(chain: &C, from: Address, init_code: Bytes) -> Result<Address> {
    let receipt = chain
        .send(TxRequest {
            from,
            to: None,
            data: init_code,
            value: U256::ZERO,
        })
        .await?;
    receipt
        .contract_address
        .ok_or_else(|| ChainError::Decode("creation receipt has no contract address".into()))
}

pub(crate) async fn view<C: Chain, T: SolCall>(
    chain: &C,
    to: Address,
    call: T,
) -> Result<T::Return> {
    let tx = TxRequest {
        from: Address::ZERO,
        to: Some(to),
        data: call.abi_encode().into(),
        value: U256::ZERO,
    };
    let out = chain.call(tx).await?;
    T::abi_decode_returns(&out).map_err(|e| ChainError::Decode(format!("{}: {e}", T::SIGNATURE)))
}

fn to_u128(v: U256) -> Result<u128> {
    u128::try_from(v).map_err(|_| ChainError::Decode(format!("{v} does not fit in u128")))
}

fn to_u64(v: U256) -> Result<u64> {
    u64::try_from(v).map_err(|_| ChainError::Decode(format!("{v} does not fit in u64")))
}
